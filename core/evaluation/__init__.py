"""Evaluation: metrics, the lip-sync probe, the eval job and its report."""
