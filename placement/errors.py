"""Exceptions raised by `placement`.

Every message names the field or the cause and the next step, so that the CLI can
print it as it is and exit with code 2.
"""

from __future__ import annotations

__all__ = [
    "PlacementError",
    "InputError",
    "PlanError",
    "InfeasibleError",
    "SolverNotInstalledError",
    "InputWarning",
    "SolveInterrupted",
]


class PlacementError(Exception):
    """Base class of every error this library raises on purpose."""


class InputError(PlacementError, ValueError):
    """An instance, model, device or option is wrong; the message says which and how to fix it."""


class PlanError(PlacementError, ValueError):
    """A plan does not match its instance (unknown device, group out of range, bad shares)."""


class InfeasibleError(PlacementError):
    """No placement can satisfy the instance (for example the model fits on no device)."""


class SolverNotInstalledError(PlacementError, ImportError):
    """A solver back end needs a package that is not installed; the message names it."""


class InputWarning(UserWarning):
    """A value that is valid but probably a mistake (a 500 bit/s link, a 60 s latency); the CLI prints one line."""


class SolveInterrupted(KeyboardInterrupt):
    """The user pressed Ctrl-C during a solve; `result` is the incumbent (a `Result`, or None).

    A `KeyboardInterrupt`, so that code which does not look for it stops as usual.
    """

    def __init__(self, result=None) -> None:
        super().__init__("interrupted")
        self.result = result
