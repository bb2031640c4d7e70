"""The wizard's pages: start, import, prepare, train (and the evaluation report)."""
