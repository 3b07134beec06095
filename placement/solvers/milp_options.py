"""The exact MILP's options checked, and `pin`/`forbid` turned into masks of allowed devices (docs/milp.md, Options)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from placement.errors import InputError
from placement.instance import Instance
from placement.plan import Placement, Plan
from placement.solvers.backends import SOLVERS

__all__ = ["MODES", "allowed_masks", "check_milp_options", "check_pins"]

MODES = ("horizon", "interval")
_BLOCK_KEY = re.compile(r"^(attention|projection|ffn|layer)\[(\d+)\]$")


def allowed_masks(instance: Instance, pin: dict[str, str] | None, forbid: dict[str, list[str]] | None) -> dict[str, np.ndarray]:
    """Masks of allowed devices from `pin` (block → device) and `forbid` (device → blocks).

    Parameters
    ----------
    instance : Instance
    pin : dict, optional
        Block name (``embed``, ``lm_head``, ``attention``, ``projection``, ``ffn``, ``layer``
        or one layer's, as ``ffn[3]``) → the device it must run on.
    forbid : dict, optional
        Device name → the blocks it must not hold.

    Returns
    -------
    dict of str to ndarray of bool
        Per block kind, the allowed devices, (L, N) or (N,) for the ends; ``pin_attention``
        (L, N) where a layer's groups are pinned.

    Raises
    ------
    InputError
        An unknown block or device, a layer out of range, or pins that leave a block no device.
    """
    L, N = instance.model.layers, instance.n_devices
    masks = {"attention": np.ones((L, N), bool), "projection": np.ones((L, N), bool), "ffn": np.ones((L, N), bool),
             "embed": np.ones(N, bool), "lm_head": np.ones(N, bool)}
    pinned_attention = np.zeros((L, N), bool)
    known = "'embed', 'lm_head', 'attention', 'projection', 'ffn', 'layer', or one layer's as 'ffn[3]'"

    def targets(key: str) -> list[tuple[str, Any]]:
        if key in ("embed", "lm_head", "attention", "projection", "ffn"):
            return [(key, slice(None))]
        if key == "layer":
            return [(kind, slice(None)) for kind in ("attention", "projection", "ffn")]
        match = _BLOCK_KEY.match(key)
        if not match:
            raise InputError(f"block {key!r} is unknown; name blocks as {known}")
        kind, layer = match.group(1), int(match.group(2))
        if layer >= L:
            raise InputError(f"block {key!r}: the model has layers 0 to {L - 1}")
        kinds = ("attention", "projection", "ffn") if kind == "layer" else (kind,)
        return [(k, layer) for k in kinds]

    for key, device in (pin or {}).items():
        m = instance.cluster.index(device)
        for kind, layers in targets(key):
            row = np.zeros(N, bool)
            row[m] = True
            masks[kind][layers] = masks[kind][layers] & row
            if kind == "attention":
                pinned_attention[layers, m] = True
    for device, keys in (forbid or {}).items():
        m = instance.cluster.index(device)
        for key in keys:
            for kind, layers in targets(key):
                if kind in ("embed", "lm_head"):
                    masks[kind][m] = False
                else:
                    masks[kind][layers, m] = False
    for kind, mask in masks.items():
        empty = ~mask.any(axis=-1)
        if np.any(empty):
            where = kind if mask.ndim == 1 else f"{kind}[{int(np.flatnonzero(empty)[0])}]"
            raise InputError(f"`pin`/`forbid` leave no device for {where}; allow at least one")
    if pinned_attention.any():
        masks["pin_attention"] = pinned_attention
    return masks


def check_milp_options(instance: Instance, solver: str, mode: str, formulation: str, token_blocks, interval: int) -> None:
    """Raise `InputError`, naming the option and the fix, unless `solve_milp`'s options are valid."""
    if solver not in SOLVERS:
        raise InputError(f"unknown MILP solver {solver!r}; solvers are {', '.join(SOLVERS)}")
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; modes are {', '.join(MODES)}")
    if formulation not in ("counts", "per-group"):
        raise InputError(f"unknown formulation {formulation!r}; use 'counts' or 'per-group'")
    if not (token_blocks in ("adaptive", "exact") or (isinstance(token_blocks, int) and not isinstance(token_blocks, bool)
                                                      and token_blocks >= 1)):
        raise InputError(f"`token_blocks` must be 'adaptive', 'exact' or a positive number of tokens, got {token_blocks!r}")
    I = instance.workload.n_intervals
    if mode == "interval" and not (isinstance(interval, int) and 0 <= interval < I):
        raise InputError(f"`interval` must be between 0 and {I - 1}, got {interval!r}")


def check_pins(pin: Any, forbid: Any, current: Any) -> None:
    """Raise `InputError` unless `pin` (block → device), `forbid` (device → blocks) and `current`
    (from `--option`, say) have the types `solve_milp` takes."""
    if pin is not None and not (isinstance(pin, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                               for k, v in pin.items())):
        raise InputError(f"`pin` must map block names to device names, such as {{embed: pi5}}, got {pin!r:.80}")
    if forbid is not None and not (isinstance(forbid, dict) and all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(b, str) for b in v) for k, v in forbid.items())):
        raise InputError(f"`forbid` must map device names to lists of blocks, such as {{pi5: [ffn]}}, got {forbid!r:.80}")
    if current is not None and not isinstance(current, (Placement, Plan)):
        raise InputError(f"`current` must be a Placement or a Plan, got {type(current).__name__}")
