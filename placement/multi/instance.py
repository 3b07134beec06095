"""Multi-model instances: several models, each with its own workload, sharing one cluster.

A multi-model file (docs/parallel.md) holds a top-level ``models:`` list and one shared
cluster (``devices``, ``switches``, ``links``, ``mesh``, ``network``, ``routing``). Each
entry is loaded with `placement.instance.instance_from_dict` on that cluster, so every
field of a model and its workload is validated exactly as in a single-model file; the
result is a `MultiInstance` holding one `Instance` per model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic
from pydantic import BaseModel, ConfigDict, Field

from placement.errors import InfeasibleError, InputError
from placement.files import load_data_file, short
from placement.instance import Instance, instance_from_dict

__all__ = ["MultiInstance", "OBJECTIVES", "CLUSTER_FIELDS", "multi_from_dict", "load_multi", "is_multi_file",
           "multi_instances_dir"]

OBJECTIVES = ("makespan", "weighted")
# Top-level fields every model's instance shares (docs/instances.md describes each).
CLUSTER_FIELDS = ("devices", "switches", "links", "mesh", "network", "routing")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelEntry(_Strict):
    """One model of a multi-model file."""

    name: str | None = Field(None, description="Unique name in reports (default: the model's name, then a number).")
    model: str | dict[str, Any] = Field(description="As `model` in an instance file.")
    workload: dict[str, Any] = Field(description="As `workload` in an instance file.")
    weight: float = Field(1.0, description="Weight of this model's finish time in the `weighted` objective.")
    expert_routing: str | list[Any] | None = None


class MultiFile(_Strict):
    """The multi-model file format (docs/parallel.md); the cluster fields are checked by the single-model loader."""

    name: str | None = None
    description: str = ""
    objective: Literal["makespan", "weighted"] = "makespan"
    models: list[ModelEntry] = Field(min_length=1)
    devices: list[Any]
    switches: list[Any] = []
    links: list[Any] = []
    mesh: Any = None
    network: Any = "switched"
    routing: Any = "fastest"


@dataclass(frozen=True, eq=False)
class MultiInstance:
    """Several models, each with its own workload, on one cluster.

    Attributes
    ----------
    name : str
    instances : tuple of Instance
        One per model, all on the same cluster (same devices, links and network).
    names : tuple of str
        The models' unique names, in file order (also the scheduling priority).
    weights : ndarray, shape (M,)
        Weight of each model's finish time in the ``weighted`` objective.
    objective : {"makespan", "weighted"}
    description : str
    """

    name: str
    instances: tuple[Instance, ...]
    names: tuple[str, ...]
    weights: np.ndarray
    objective: str = "makespan"
    description: str = ""

    @property
    def cluster(self):
        """The shared cluster (`placement.cost.hardware.Cluster`)."""
        return self.instances[0].cluster

    @property
    def n_models(self) -> int:
        return len(self.instances)

    @property
    def n_devices(self) -> int:
        return self.instances[0].n_devices


def _validated(data: dict[str, Any], source: str) -> MultiFile:
    if "model" in data:
        raise InputError(f"{source}: `model` and `models` are both given; a multi-model file lists every model "
                         "under `models:` (docs/parallel.md)")
    try:
        return MultiFile.model_validate(data)
    except pydantic.ValidationError as exc:
        parts = []
        for error in exc.errors():
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
            if error["type"] == "extra_forbidden":
                parts.append(f"`{where}`: unknown field; remove it or check its spelling (see docs/parallel.md)")
            elif error["type"] == "missing":
                parts.append(f"`{where}`: required field is missing")
            else:
                parts.append(f"`{where}`: {error['msg']} (got {short(error.get('input'))})")
        raise InputError(f"{source}: " + "; ".join(dict.fromkeys(parts))) from None


def _names(spec: MultiFile, instances: list[Instance], source: str) -> tuple[str, ...]:
    names = [entry.name or inst.model.name for entry, inst in zip(spec.models, instances)]
    for i, name in enumerate(names):
        if names.count(name) > 1 and spec.models[i].name is None:
            names[i] = f"{name}-{i}"  # two unnamed copies of one model
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"{source}: `models[].name` {', '.join(map(repr, repeated))} is given twice; "
                         "give every model a unique name")
    return tuple(names)


def multi_from_dict(data: dict[str, Any], *, source: str = "multi-model instance",
                    base: Path | None = None) -> MultiInstance:
    """Build and validate a `MultiInstance` from a parsed multi-model file.

    Parameters
    ----------
    data : dict
        The file's contents (docs/parallel.md).
    source : str
        Where the data came from, for messages.
    base : Path, optional
        Folder against which relative paths in the models are resolved.

    Returns
    -------
    MultiInstance

    Raises
    ------
    InputError
        On a missing, unknown or invalid field; messages name ``models[i]`` and the field.
    InfeasibleError
        When one model cannot fit on the whole cluster even alone.
    """
    spec = _validated(data, source)
    cluster = {key: data[key] for key in CLUSTER_FIELDS if key in data}
    instances = []
    for i, entry in enumerate(spec.models):
        if not (math.isfinite(entry.weight) and entry.weight > 0):
            raise InputError(f"{source}: `models[{i}].weight` must be a positive number, got {entry.weight!r}")
        single = {"name": entry.name or f"models[{i}]", "model": entry.model, "workload": entry.workload, **cluster}
        if entry.expert_routing is not None:
            single["expert_routing"] = entry.expert_routing
        where = f"{source}: models[{i}]"
        try:
            instances.append(instance_from_dict(single, source=where, base=base))
        except (InputError, InfeasibleError) as exc:  # every message names the model entry it is about
            text = str(exc)
            raise type(exc)(text if text.startswith(where) else f"{where}: {text}") from None
    return MultiInstance(
        name=spec.name or source, instances=tuple(instances), names=_names(spec, instances, source),
        weights=np.array([entry.weight for entry in spec.models], dtype=float), objective=spec.objective,
        description=spec.description,
    )


def multi_instances_dir() -> Path:
    """The folder of the shipped multi-model instances (``instances/parallel``)."""
    from placement.instance import instances_dir

    return instances_dir() / "parallel"


def _path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_file():
        return path
    for shipped in (multi_instances_dir() / f"{path}.yaml", multi_instances_dir().parent / f"{path}.yaml"):
        if shipped.is_file():
            return shipped
    names = sorted(p.stem for p in multi_instances_dir().glob("*.yaml"))
    raise InputError(f"multi-model instance {str(path)!r} is neither a file nor a shipped one; "
                     f"shipped (instances/parallel): {', '.join(names)}")


def is_multi_file(path: str | Path) -> bool:
    """True when `path` (or a shipped name) is a multi-model file: a mapping with a top-level ``models:``."""
    try:
        data = load_data_file(_path(path), "instance")
    except InputError:
        return False
    return isinstance(data, dict) and "models" in data


def load_multi(path: str | Path) -> MultiInstance:
    """Load a multi-model file, or a shipped one by name (``parallel/1b-3b-4dev`` or ``1b-3b-4dev``).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    MultiInstance

    Raises
    ------
    InputError, InfeasibleError
        See `multi_from_dict`; also when the file is missing or not YAML.
    """
    path = _path(path)
    data = load_data_file(path, "multi-model instance")
    if not isinstance(data, dict) or "models" not in data:
        raise InputError(f"{path}: expected a multi-model file with a top-level `models:` list (docs/parallel.md); "
                         "for one model use `placement solve`")
    return multi_from_dict(data, source=str(path), base=path.parent)
