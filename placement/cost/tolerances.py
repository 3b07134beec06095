"""Numeric tolerances shared by the evaluator and every back end (one definition each)."""

__all__ = ["MEMORY_RTOL", "SHARE_ATOL", "SHARE_SUM_ATOL"]

# A device is over its memory when needed > limit · (1 + MEMORY_RTOL): sums of block
# sizes in a different order must not turn a plan that exactly fills a device infeasible.
MEMORY_RTOL = 1e-12

# Two shares of a split block are equal (no migration, aligned with the heads) within this.
SHARE_ATOL = 1e-9

# A plan's shares of one block must sum to 1 within this (plans read from JSON carry rounding).
SHARE_SUM_ATOL = 1e-6
