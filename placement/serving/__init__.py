"""Serving many requests through a placement: workloads, the discrete-event simulation, policies, metrics.

`simulate(instance, plan, requests, policy)` judges a plan under load on the shared
cost model (docs/serving.md). Workloads come from the instance file's ``serving:``
section (`serving_from_mapping`), a seeded Poisson generator (`generate_trace`) or a
CSV trace (`read_trace`).
"""

from placement.serving.metrics import ServingReport
from placement.serving.simulate import simulate
from placement.serving.workload import (POLICIES, Requests, ServingSpec, generate_trace, read_trace,
                                        serving_from_mapping, write_trace)

__all__ = ["simulate", "ServingReport", "Requests", "ServingSpec", "POLICIES", "generate_trace", "read_trace",
           "write_trace", "serving_from_mapping"]
