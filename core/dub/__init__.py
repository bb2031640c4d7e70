"""Dub: a DubPlan decides the frames; the Renderer draws them; pose control turns the head."""
