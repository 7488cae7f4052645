"""The template's benchmarks: run them from the repository's top with ``python -m benchmarks.run``."""
