"""Performance harness: `python -m benchmarks run --scale small|medium|large [--json PATH]` (see README.md)."""
