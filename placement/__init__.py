"""placement: where each part of a large language model runs on heterogeneous edge devices.

The shape of the library: a cost model (`placement.cost`) → instances
(`load_instance`) → plans (`Plan`) → one shared latency evaluator (`evaluate`) that
judges the plan of every solver back end (`solve`).

Examples
--------
>>> import placement
>>> inst = placement.load_instance("edge/llama-3.2-1b-4dev")
>>> result = placement.solve(inst, method="pipeline")
>>> result.objective == result.report.total_s
True
"""

from placement.cost.hardware import Cluster, Device, Link
from placement.cost.model import ModelSpec, load_model, model_names
from placement.builder import device, link
from placement.errors import InfeasibleError, InputError, PlacementError, PlanError, SolverNotInstalledError
from placement.evaluate import Report, Violation, evaluate
from placement.instance import Instance, Workload, instance_names, load_instance
from placement.plan import Placement, Plan
from placement.result import Result
from placement.solve import METHODS, solve

__version__ = "0.1.0"

__all__ = [
    "Cluster", "Device", "Link", "ModelSpec", "load_model", "model_names",
    "PlacementError", "InputError", "PlanError", "InfeasibleError", "SolverNotInstalledError",
    "Report", "Violation", "evaluate", "Instance", "Workload", "instance_names", "load_instance",
    "Placement", "Plan", "Result", "METHODS", "solve", "device", "link",
]
