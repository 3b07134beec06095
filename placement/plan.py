"""Plans: what runs where, at what precision, in every re-decision interval.

A `Plan` is plain data. For each interval it holds a `Placement`:

- ``attention[l, g]``: the device of attention group ``g`` of layer ``l`` (one key/value
  head with its query heads), so that a group that moves between intervals is
  unambiguous;
- ``projection[l]`` and ``ffn[l]``: per-device shares of the block (one-hot when the
  whole block runs on one device, several non-zero shares for a tensor-parallel split);
- ``embed`` and ``lm_head``: one device each;
- ``precision``: bits of every block, or None for the instance's defaults.

Device indices refer to ``plan.devices``. A plan with one interval is static: it is
used for the whole generation. Plans round-trip through JSON (`Plan.to_json`,
`Plan.from_json`), where devices are written by name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from placement.errors import InputError, PlanError
from placement.files import parse_json, read_text, short, write_text_atomic

__all__ = ["Placement", "Plan", "COLLECTIVES", "PLAN_FORMAT"]

PLAN_FORMAT = "placement-plan/1"
COLLECTIVES = ("ring", "star", "gather", "ota")
_PLAN_KEYS = ("format", "method", "devices", "groups_per_layer", "collective", "root", "intervals", "extras",
              "windows", "client", "experts_per_layer")
_INTERVAL_KEYS = ("attention", "projection", "ffn", "embed", "lm_head", "precision", "experts")
MAX_GROUPS_PER_LAYER = 1_024  # also the limit of a model's kv_heads (placement.instance.LIMITS)
MAX_EXPERTS_PER_LAYER = 4_096  # a layer written as one name expands to this many entries


@dataclass(frozen=True, eq=False)
class Placement:
    """Where every block runs during one interval.

    Attributes
    ----------
    attention : ndarray of int, shape (L, K)
        Device index of each attention group.
    projection, ffn : ndarray of float, shape (L, N)
        Share of each layer's output projection / FFN on each device; rows sum to 1.
        A split projection must follow its layer's heads (device n holds the rows
        of the heads it runs, so its share is its groups / K).
    embed, lm_head : int
        Device indices.
    precision : dict or None
        Overrides of the instance's precision (see `placement.cost.precision.Precision`).
    experts : ndarray of int, shape (L, E), or None
        MoE models: the device index of every routed expert of every layer (-1 in dense
        layers). None: each layer's experts run with its FFN (router and shared experts),
        and are split like it (docs/moe.md).
    """

    attention: np.ndarray
    projection: np.ndarray
    ffn: np.ndarray
    embed: int
    lm_head: int
    precision: dict[str, Any] | None = None
    experts: np.ndarray | None = None

    @classmethod
    def by_layer(cls, layer_devices: np.ndarray, kv_heads: int, n_devices: int, *, embed: int | None = None,
                 lm_head: int | None = None) -> "Placement":
        """Whole layers on devices: layer ``l`` (groups, projection, FFN) on ``layer_devices[l]``.

        ``embed`` defaults to the first layer's device and ``lm_head`` to the last's.
        """
        layer_devices = np.asarray(layer_devices, dtype=np.int64)
        one_hot = np.zeros((len(layer_devices), n_devices))
        one_hot[np.arange(len(layer_devices)), layer_devices] = 1.0
        return cls(
            attention=np.repeat(layer_devices[:, None], kv_heads, axis=1),
            projection=one_hot,
            ffn=one_hot.copy(),
            embed=int(layer_devices[0] if embed is None else embed),
            lm_head=int(layer_devices[-1] if lm_head is None else lm_head),
        )


@dataclass(frozen=True, eq=False)
class Plan:
    """A placement per interval, the collective for split blocks, and back-end extras.

    Attributes
    ----------
    devices : tuple of str
        Device names; placements index into this tuple.
    intervals : list of Placement
        One per re-decision interval, or a single one used throughout.
    collective : {"ring", "star", "gather", "ota"}
        How the shares of a split block are combined (all-reduce).
    root : str or None
        The master device of ``star`` and ``gather``; None picks the participant
        with the largest share.
    method : str
        The back end that made the plan.
    extras : dict
        Back-end data carried along (split point, beamformers, ...), JSON-serialisable.
    windows : dict of str to int
        Sliding-window weight offload (TPI-LLM): device name → the number ``W`` of its
        layers whose weights it keeps in memory at once; the rest stream from its disk
        ahead of use (docs/tensor-parallel.md). A device not named keeps all its weights.
    client : str or None
        The user's device: where the prompt starts and the generated tokens must arrive.
        None (default) means the ``embed`` device of interval 0, and nothing extra is
        charged. Otherwise the prompt's token ids travel from the client to ``embed``
        before the prefill, and every sampled token id travels from ``lm_head`` to the
        client (docs/cost-model.md, "The client").
    """

    devices: tuple[str, ...]
    intervals: list[Placement]
    collective: str = "ring"
    root: str | None = None
    method: str = ""
    extras: dict[str, Any] = field(default_factory=dict)
    windows: dict[str, int] = field(default_factory=dict)
    client: str | None = None

    @property
    def static(self) -> bool:
        """True when one placement serves the whole generation."""
        return len(self.intervals) == 1

    def placement(self, k: int) -> Placement:
        """The placement of interval `k` (the only one for a static plan)."""
        return self.intervals[0] if self.static else self.intervals[k]

    def replace(self, **changes: Any) -> "Plan":
        return replace(self, **changes)

    # ---------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data, devices by name (see docs/instances.md, "Plan files")."""
        names = self.devices

        def shares(row: np.ndarray) -> str | dict[str, float]:
            nonzero = np.flatnonzero(row)
            if len(nonzero) == 1 and row[nonzero[0]] == 1.0:
                return names[nonzero[0]]
            return {names[i]: float(row[i]) for i in nonzero}

        def groups(row: np.ndarray) -> str | list[str]:
            return names[row[0]] if np.all(row == row[0]) else [names[i] for i in row]

        intervals = []
        for p in self.intervals:
            entry: dict[str, Any] = {
                "attention": [groups(row) for row in p.attention],
                "projection": [shares(row) for row in p.projection],
                "ffn": [shares(row) for row in p.ffn],
                "embed": names[p.embed],
                "lm_head": names[p.lm_head],
            }
            if p.precision:
                entry["precision"] = p.precision
            if p.experts is not None:
                entry["experts"] = [None if row[0] < 0 else groups(row) for row in np.asarray(p.experts)]
            intervals.append(entry)
        data = {
            "format": PLAN_FORMAT,
            "method": self.method,
            "devices": list(names),
            "groups_per_layer": int(self.intervals[0].attention.shape[1]),
            "collective": self.collective,
            "root": self.root,
            "intervals": intervals,
            "extras": self.extras,
        }
        if self.windows:
            data["windows"] = {name: int(w) for name, w in self.windows.items()}
        if self.client is not None:
            data["client"] = self.client
        placed = [p.experts for p in self.intervals if p.experts is not None]
        if placed:
            data["experts_per_layer"] = int(placed[0].shape[1])
        return data

    def to_json(self, path: str | Path | None = None) -> str:
        """Serialise to JSON text, and write it to `path` when given."""
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        if path is not None:
            write_text_atomic(path, text + "\n")  # a full disk leaves the previous file whole
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, kv_heads: int | None = None) -> "Plan":
        """Read a plan from parsed JSON.

        Parameters
        ----------
        data : dict
            As written by `to_dict`.
        kv_heads : int, optional
            Groups per layer, to expand a layer written as one device name when the
            file does not say (``groups_per_layer``, written by `to_dict`).

        Raises
        ------
        PlanError
            On a missing field or a device name the plan does not declare.
        """
        names = _check_header(data)
        width = _groups_per_layer(data.get("groups_per_layer", kv_heads))
        extras = data.get("extras") or {}
        if not isinstance(extras, dict):
            raise PlanError(f"plan `extras` must be a mapping, got {short(extras)}")
        reader = _Reader(names)
        intervals = [reader.placement(entry, k, width, data.get("experts_per_layer"))
                     for k, entry in enumerate(data["intervals"])]
        if not intervals:
            raise PlanError("plan: `intervals` is empty; give at least one placement")
        client = data.get("client")
        if client is not None:
            reader.index(client, "client")
        return cls(
            devices=names,
            intervals=intervals,
            collective=data.get("collective", "ring"),
            root=data.get("root"),
            method=data.get("method", ""),
            extras=extras,
            windows=reader.windows(data.get("windows") or {}),
            client=client,
        )

    @classmethod
    def from_json(cls, text_or_path: str | Path, *, kv_heads: int | None = None) -> "Plan":
        """Read a plan from JSON text or from a file path."""
        text = str(text_or_path)
        try:
            if not text.lstrip().startswith("{"):
                path = Path(text_or_path)
                if not path.exists():
                    raise PlanError(f"plan file {str(path)!r} does not exist")
                text = read_text(path, "plan file")
            data = parse_json(text)
        except InputError as exc:
            raise PlanError(f"plan: {exc}") from None
        return cls.from_dict(data, kv_heads=kv_heads)


def _groups_per_layer(width: Any) -> int | None:
    """The plan's ``groups_per_layer`` checked: None (not given) or a whole number in 1..MAX_GROUPS_PER_LAYER."""
    if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 1):
        raise PlanError(f"plan `groups_per_layer` must be a positive whole number, got {short(width)}")
    if width is not None and width > MAX_GROUPS_PER_LAYER:  # each layer written as one name expands to `width`
        raise PlanError(f"plan `groups_per_layer` is {width:,}; the limit is {MAX_GROUPS_PER_LAYER:,} "
                        "(the model's kv_heads)")
    return width


class _Reader:
    """Reads a plan file's intervals against its declared device names, naming the field on every error."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.lookup = {name: i for i, name in enumerate(names)}

    def index(self, name: Any, where: str) -> int:
        if not isinstance(name, str) or name not in self.lookup:
            raise PlanError(f"plan {where}: device {short(name)} is not in the plan's `devices` ({', '.join(self.names)})")
        return self.lookup[name]

    def share_row(self, entry: Any, where: str) -> np.ndarray:
        """One device name (the whole block) or a mapping of device name to share."""
        row = np.zeros(len(self.names))
        if isinstance(entry, dict):
            for name, share in entry.items():
                if isinstance(share, bool) or not isinstance(share, (int, float)):
                    raise PlanError(f"plan {where}: share of {short(name)} must be a number, got {short(share)}")
                row[self.index(name, where)] = float(share)
        else:
            row[self.index(entry, where)] = 1.0
        return row

    @staticmethod
    def rows(entry: dict, key: str, k: int) -> list:
        if key not in entry:
            raise PlanError(f"plan interval {k}: missing field {key!r}")
        value = entry[key]
        if not isinstance(value, list):
            raise PlanError(f"plan interval {k}: `{key}` must be a list with one entry per layer, got {short(value)}")
        return value

    def attention(self, entry: dict, k: int, width: int | None) -> np.ndarray:
        """(L, K) device indices; a layer written as one name puts all its groups there."""
        att_rows = self.rows(entry, "attention", k)
        groups = width or max((len(r) for r in att_rows if isinstance(r, list)), default=1)
        attention = [[self.index(n, f"interval {k} layer {l}") for n in row] if isinstance(row, list)
                     else [self.index(row, f"interval {k} layer {l}")] * groups for l, row in enumerate(att_rows)]
        if len({len(row) for row in attention}) > 1:
            raise PlanError(f"plan interval {k}: every layer needs the same number of groups in `attention`")
        return np.array(attention, dtype=np.int64)

    def placement(self, entry: Any, k: int, width: int | None, experts_width: Any) -> "Placement":
        """Interval `k` of the file as a `Placement`."""
        if not isinstance(entry, dict):
            raise PlanError(f"plan interval {k}: expected a mapping of `attention`, `projection`, `ffn`, `embed`, `lm_head`")
        _no_unknown_keys(entry, _INTERVAL_KEYS, f"interval {k}")
        attention = self.attention(entry, k, width)
        for key in ("embed", "lm_head"):
            if key not in entry:
                raise PlanError(f"plan interval {k}: missing field {key!r}")
        precision = entry.get("precision")
        if precision is not None and not isinstance(precision, dict):
            raise PlanError(f"plan interval {k}: `precision` must be a mapping such as {{'ffn': 8}}, got {short(precision)}")
        return Placement(
            experts=_expert_rows(entry.get("experts"), self.index, k, experts_width),
            attention=attention,
            projection=np.array([self.share_row(r, f"interval {k} projection {l}")
                                 for l, r in enumerate(self.rows(entry, "projection", k))]),
            ffn=np.array([self.share_row(r, f"interval {k} ffn {l}") for l, r in enumerate(self.rows(entry, "ffn", k))]),
            embed=self.index(entry["embed"], f"interval {k} embed"),
            lm_head=self.index(entry["lm_head"], f"interval {k} lm_head"),
            precision=precision,
        )

    def windows(self, windows: Any) -> dict[str, int]:
        """The plan's sliding-window offload: device name → layers kept in memory (at least 2)."""
        if not isinstance(windows, dict):
            raise PlanError(f"plan `windows` must be a mapping of device name to layers kept in memory, got {short(windows)}")
        for name, w in windows.items():
            self.index(name, "windows")
            if isinstance(w, bool) or not isinstance(w, int) or w < 2:
                raise PlanError(f"plan `windows.{name}` must be a whole number of layers, at least 2 "
                                f"(one layer computing, one loading), got {short(w)}")
        return dict(windows)


def _expert_rows(rows: Any, index, k: int, width: Any) -> np.ndarray | None:
    """An interval's ``experts`` field as (L, E) device indices (-1 for a dense layer), or None when absent.

    Each layer is null (dense), one device name (all its experts there) or a list of one name per expert;
    ``width`` (the plan's ``experts_per_layer``) gives E when no layer is written out.
    """
    if rows is None:
        return None
    if not isinstance(rows, list):
        raise PlanError(f"plan interval {k}: `experts` must be a list with one entry per layer, got {short(rows)}")
    width = width or max((len(r) for r in rows if isinstance(r, list)), default=0)
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise PlanError(f"plan interval {k}: give `experts_per_layer` (a positive whole number) or list the device "
                        "of every expert of one layer")
    if width > MAX_EXPERTS_PER_LAYER:
        raise PlanError(f"plan `experts_per_layer` is {width:,}; the limit is {MAX_EXPERTS_PER_LAYER:,}")
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for l, row in enumerate(rows):
        if row is None:
            continue
        names = row if isinstance(row, list) else [row] * width
        if len(names) != width:
            raise PlanError(f"plan interval {k}, layer {l}: `experts` lists {len(names)} devices, other layers {width}")
        out[l] = [index(n, f"interval {k} layer {l} experts") for n in names]
    return out


def _no_unknown_keys(data: dict, known: tuple[str, ...], where: str) -> None:
    unknown = [key for key in data if key not in known]
    if unknown:
        raise PlanError(f"plan {where}: unknown field(s) {', '.join(short(k) for k in unknown)}; "
                        f"known fields are {', '.join(known)} (docs/instances.md, \"Plan files\")")


def _check_header(data: Any) -> tuple[str, ...]:
    """Check a plan's top level (keys, `format`, scalar fields); return its device names."""
    if not isinstance(data, dict) or not isinstance(data.get("intervals"), list) or not isinstance(data.get("devices"), list):
        raise PlanError("plan: expected a mapping with a `devices` list and an `intervals` list "
                        "(a file written by `placement solve --out`)")
    _no_unknown_keys(data, _PLAN_KEYS, "(top level)")
    if data.get("format", PLAN_FORMAT) != PLAN_FORMAT:
        raise PlanError(f"plan `format` is {short(data['format'])}; this version reads {PLAN_FORMAT!r}")
    names = data["devices"]
    if not names or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise PlanError(f"plan `devices` must be a list of distinct device names, got {short(names)}")
    for key in ("method", "collective", "root", "client"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise PlanError(f"plan `{key}` must be text, got {short(data[key])}")
    if data.get("collective", "ring") not in COLLECTIVES:
        raise PlanError(f"plan `collective` must be one of {', '.join(COLLECTIVES)}, got {short(data['collective'])}")
    return tuple(names)
