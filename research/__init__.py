"""Research around the assessor: the measurements and experiments behind docs/results.md and
docs/benchmarks.md. Not installed with lmmeval (run from the repository root: ``python -m research.X``);
``import lmmeval`` never loads it."""
