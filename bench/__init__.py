"""Benchmarks of the hashtag analytics service: `make bench` (see bench/README.md)."""
