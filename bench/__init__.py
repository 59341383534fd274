"""Benchmarks of the operator on the real test stack, side by side with two baselines.

Run `scripts/bench` (or `python3 -m bench --help`); see README.md, "Benchmarks".
"""
