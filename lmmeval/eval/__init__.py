"""Evaluation: correlation and saliency metrics, and the report of a checkpoint on a manifest."""
