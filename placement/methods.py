"""Every back end by name: the one literal list of methods (scipy's ``minimize(method=...)`` pattern).

It imports nothing: `placement.solve` and the option checks (`placement.options`) both
read it, and a back end's module is imported only when its method is used.
"""

__all__ = ["METHODS"]

# method name -> (module, function). Listed once; modules are imported only when used.
METHODS: dict[str, tuple[str, str]] = {
    "single": ("placement.solvers.reference", "solve_single"),
    "pipeline": ("placement.solvers.reference", "solve_pipeline"),
    "milp": ("placement.solvers.milp", "solve_milp"),
    "myopic": ("placement.solvers.myopic", "solve_myopic"),
    "myopic+": ("placement.solvers.myopic_plus", "solve_myopic_plus"),
    "myopic-milp": ("placement.solvers.myopic_milp", "solve_myopic_milp"),
    "pipeline-dp": ("placement.solvers.baselines", "solve_pipeline_dp"),
    "experts": ("placement.solvers.experts", "solve_experts"),
    "memory-proportional": ("placement.solvers.baselines", "solve_memory_proportional"),
    "round-robin": ("placement.solvers.baselines", "solve_round_robin"),
    "greedy": ("placement.solvers.baselines", "solve_greedy"),
    "static": ("placement.solvers.static", "solve_static"),
    "tp": ("placement.solvers.tp", "solve_tp"),
    "ota": ("placement.solvers.ota", "solve_ota"),
    "split": ("placement.solvers.split", "solve_split"),
    "split-adaptive": ("placement.solvers.split", "solve_split_adaptive"),
    "serving": ("placement.serving.choose", "solve_serving"),
}
