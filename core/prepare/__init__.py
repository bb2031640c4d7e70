"""Prepare: a clip becomes a project folder (decode, faces, geometry, diagnostics). No learning."""
