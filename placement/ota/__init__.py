"""Over-the-air all-reduce for tensor parallelism (Zhang et al., arXiv 2502.12559): docs/ota.md.

- `channel`: the instance's ``wireless`` section (`Wireless`) and seeded channel sampling;
- `beamforming`: zero-forcing precoders, the SDR receive beamformer with Gaussian
  randomization, the closed-form MSE of a beamformer, the matched-filter baseline;
- `assignment`: the model assignment by stochastic successive convex approximation;
- `baselines`: digital OFDMA with quantization and uncoded analog FDMA;
- `allreduce`: time and MSE of one all-reduce of a plan, as the evaluator charges them.

The solver is `placement.solvers.ota.solve_ota` (method ``ota``).
"""
