"""Several models sharing one cluster (PPN-style parallel networks): files, the joint evaluator, joint methods.

docs/parallel.md teaches the file format, the concurrency model, the lower bounds
and the methods.
"""

from placement.multi.evaluate import JointPlan, JointReport, evaluate_joint
from placement.multi.instance import MultiInstance, load_multi, multi_from_dict
from placement.multi.solve import METHODS, MultiResult, solve

__all__ = ["MultiInstance", "load_multi", "multi_from_dict", "JointPlan", "JointReport", "evaluate_joint",
           "solve", "MultiResult", "METHODS"]
