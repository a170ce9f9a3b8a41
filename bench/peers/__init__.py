"""Side-by-side benchmark of conveyor against peer task queues (see docs/benchmarks.md)."""
