"""Experiments: benchmarks, sweeps, optimality-gap tables and plots."""
