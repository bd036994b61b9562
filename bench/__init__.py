"""The benchmark: `make bench` (python -m bench). See BENCHMARKS.md for what it measures."""
