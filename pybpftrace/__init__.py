"""pybpftrace: trace CPython from the outside through its USDT probes."""

