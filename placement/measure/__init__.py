"""Grounding the cost model in measurement (the ``measure`` extra: ``pip install "llm-placement[measure]"``).

- `placement.measure.profile`: micro-benchmarks of this machine → a device preset file;
- `placement.measure.blocks`: the blocks of a `ModelSpec` as real PyTorch computations;
- `placement.measure.timing`: per-block, per-token decode and prefill times;
- `placement.measure.calibrate`: fit efficiencies and per-block overhead (SciPy only);
- `placement.measure.distributed`: a plan run across processes with emulated links;
- `placement.measure.validate`: the fidelity tables of docs/fidelity.md.

PyTorch is imported only when a measurement runs; without it, those functions raise
`placement.errors.SolverNotInstalledError` naming the extra. Nothing is imported here,
so ``import placement.measure.calibrate`` works without PyTorch.
"""

__all__ = ["blocks", "calibrate", "distributed", "processes", "profile", "timing", "validate"]
