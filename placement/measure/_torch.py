"""The one place `placement.measure` imports PyTorch: lazily, with a message naming the extra.

The rest of the library never needs torch; the modules of this package import it
only when a measurement runs, so that ``import placement.measure.calibrate`` (which
needs SciPy only) and the test suite's doctest collection work without it.
"""

from __future__ import annotations

import os

from placement.errors import InputError, SolverNotInstalledError

__all__ = ["torch_module", "set_threads", "INSTALL_HINT"]

INSTALL_HINT = 'pip install "llm-placement[measure]"'


def torch_module():
    """The `torch` module, or `SolverNotInstalledError` saying how to install it."""
    try:
        import torch
    except ImportError:
        raise SolverNotInstalledError(
            f"measuring needs PyTorch, which is not installed; install the extra: {INSTALL_HINT} "
            "(CPU build: pip install torch --index-url https://download.pytorch.org/whl/cpu)"
        ) from None
    return torch


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (None: every core) and return the number in use."""
    torch = torch_module()
    if threads is None:
        threads = os.cpu_count() or 1
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError(f"`threads` must be a whole number of at least 1, got {threads!r}")
    torch.set_num_threads(threads)
    return torch.get_num_threads()
