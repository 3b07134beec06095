"""Solver back ends: one module per back end, each a plain function returning a `Result`.

Reach them by name through `placement.solve(instance, method=...)`.
"""
