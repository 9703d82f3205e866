"""Benchmarks: side-by-side runs measured as ratios within one run."""
