"""Inference: the ``Assessor`` API, batch scoring of files, result writers, the differentiable reward."""
