"""DeltaLLM's temporal attention sparsity as an instance option: the ``attention:`` section.

DeltaLLM (Qi, Gao, Ren, Chen, arXiv 2507.19608) computes full attention over a local
window of the ``W`` most recent positions and a delta approximation over the older
ones, which skips a fraction ``s`` of that work. `DeltaSparsity` holds the option;
`placement.cost.blocks` turns it into the attention terms (`attended_positions`,
`attended_pairs`) that every table and back end reads. docs/sparsity.md has the
formulas, the assumptions and what is not modelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from placement.errors import InputError

__all__ = ["DeltaSparsity", "STAGES", "check_sparsity_profile", "sparsity_to_mapping"]

STAGES = ("both", "prefill", "decode")


@dataclass(frozen=True)
class DeltaSparsity:
    """Full attention inside a local window, a fraction skipped outside it.

    Attributes
    ----------
    local_window_tokens : int
        ``W``: the most recent positions a query attends to in full (≥ 0).
    delta_sparsity : float
        ``s`` in [0, 1): the fraction of the attention FLOPs and KV-cache bytes read
        for positions outside the window that the delta approximation skips.
    stages : {"both", "prefill", "decode"}
        The phases it applies in.
    """

    local_window_tokens: int
    delta_sparsity: float
    stages: str = "both"

    def __post_init__(self) -> None:
        window, s = self.local_window_tokens, self.delta_sparsity
        if isinstance(window, bool) or not isinstance(window, int) or window < 0:
            raise InputError(f"`attention.local_window` must be a whole number of tokens >= 0, got {window!r}")
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not (math.isfinite(s) and 0 <= s < 1):
            raise InputError(f"`attention.delta_sparsity` must be a number in [0, 1) (0.57 for 57 %), got {s!r}")
        if self.stages not in STAGES:
            raise InputError(f"`attention.stages` must be one of {', '.join(STAGES)}, got {self.stages!r}")

    def applies_to(self, phase: str) -> bool:
        """True when the sparsity acts in `phase` (``"prefill"`` or ``"decode"``)."""
        return self.stages in ("both", phase)


def check_sparsity_profile(profile: str) -> None:
    """Refuse sparsity under a cost profile other than ``roofline``.

    The ``kafetzis2025`` profile reproduces its paper's own equations (a full-sequence
    cost per step, no KV-cache reads), which have no local window to keep: scaling
    them would be neither that paper's model nor DeltaLLM's.

    Parameters
    ----------
    profile : str
        The workload's cost profile.

    Raises
    ------
    InputError
        When `profile` is not ``roofline``.
    """
    if profile != "roofline":
        raise InputError(f"`attention`: delta sparsity scales the roofline profile's attention terms; the "
                         f"{profile!r} profile charges its paper's own equations. Remove `attention` or set "
                         "`workload.profile: roofline`")


def sparsity_to_mapping(sparsity: DeltaSparsity) -> dict[str, Any]:
    """The instance file's ``attention:`` section that loads back as `sparsity`.

    Parameters
    ----------
    sparsity : DeltaSparsity

    Returns
    -------
    dict
    """
    return {"local_window": sparsity.local_window_tokens, "delta_sparsity": sparsity.delta_sparsity,
            "stages": sparsity.stages}
