"""A mixed-integer linear problem kept apart from the solvers that solve it.

`LinearProblem` is plain data (a cost vector, a sparse constraint matrix with row
bounds, column bounds and integrality), as cvxpy keeps a problem apart from its
solver interfaces. `ProblemBuilder` adds named families of variables and
constraints with NumPy arrays, so a formulation reads like its math in docs/milp.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

__all__ = ["LinearProblem", "ProblemBuilder"]


@dataclass(frozen=True, eq=False)
class LinearProblem:
    """``min c·x + offset  s.t.  row_lower ≤ A x ≤ row_upper,  col_lower ≤ x ≤ col_upper``, some x integer.

    Attributes
    ----------
    cost : ndarray (n,)
    matrix : scipy.sparse.csr_matrix (m, n)
    row_lower, row_upper : ndarray (m,)
    col_lower, col_upper : ndarray (n,)
    integer : ndarray of bool (n,)
    offset : float
        Constant added to the objective.
    families : dict of str to ndarray
        Column indices of each named variable family, in its shape.
    row_families : dict of str to (start, stop)
        The rows of each named constraint family.
    """

    cost: np.ndarray
    matrix: sp.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    integer: np.ndarray
    offset: float = 0.0
    families: dict[str, np.ndarray] = field(default_factory=dict)
    row_families: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        return self.matrix.shape

    def objective(self, x: np.ndarray) -> float:
        """``c·x + offset``."""
        return float(self.cost @ x + self.offset)

    def violation(self, x: np.ndarray) -> float:
        """Largest violation of any bound or row by `x` (0 for a feasible point)."""
        ax = self.matrix @ x
        return float(max(
            np.max(self.row_lower - ax, initial=0.0), np.max(ax - self.row_upper, initial=0.0),
            np.max(self.col_lower - x, initial=0.0), np.max(x - self.col_upper, initial=0.0),
        ))


class ProblemBuilder:
    """Collects variable and constraint families, then builds a `LinearProblem`.

    Examples
    --------
    >>> b = ProblemBuilder()
    >>> x = b.variables("x", (2,), upper=1, integer=True, cost=[-1, -2])
    >>> b.constraints("budget", cols=x[None, :], coefs=np.array([[1.0, 1.0]]), upper=1)
    >>> problem = b.build()
    >>> problem.shape
    (1, 2)
    """

    def __init__(self) -> None:
        self._n = 0
        self._lower: list[np.ndarray] = []
        self._upper: list[np.ndarray] = []
        self._integer: list[np.ndarray] = []
        self._cost: list[np.ndarray] = []
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []
        self._row_lower: list[np.ndarray] = []
        self._row_upper: list[np.ndarray] = []
        self._m = 0
        self.offset = 0.0
        self.families: dict[str, np.ndarray] = {}
        self.row_families: dict[str, tuple[int, int]] = {}

    @property
    def n_columns(self) -> int:
        return self._n

    def variables(self, name: str, shape: tuple[int, ...], *, lower: float = 0.0, upper: float = np.inf,
                  integer: bool = False, cost: float | np.ndarray = 0.0) -> np.ndarray:
        """Add a family of variables; returns their column indices in `shape`."""
        count = int(np.prod(shape))
        index = np.arange(self._n, self._n + count).reshape(shape)
        self._n += count
        self._lower.append(np.broadcast_to(np.asarray(lower, dtype=float), shape).ravel())
        self._upper.append(np.broadcast_to(np.asarray(upper, dtype=float), shape).ravel())
        self._integer.append(np.full(count, integer))
        self._cost.append(np.broadcast_to(np.asarray(cost, dtype=float), shape).ravel().copy())
        if name in self.families:
            raise ValueError(f"variable family {name!r} defined twice")
        self.families[name] = index
        return index

    def add_cost(self, cols: np.ndarray, coefs: np.ndarray) -> None:
        """Add ``coefs · x[cols]`` to the objective (repeated columns accumulate)."""
        cost = np.concatenate(self._cost) if len(self._cost) > 1 else self._cost[0]
        np.add.at(cost, np.asarray(cols).ravel(), np.broadcast_to(coefs, np.shape(cols)).ravel())
        self._cost = [cost]

    def constraints(self, name: str, cols: np.ndarray, coefs: np.ndarray, *, lower: float | np.ndarray = -np.inf,
                    upper: float | np.ndarray = np.inf) -> None:
        """Add rows ``lower ≤ Σ_j coefs[i, j] · x[cols[i, j]] ≤ upper``, one per row of `cols`.

        `cols` and `coefs` have shape (rows, terms); use a column index of -1 for an
        absent term (its coefficient is ignored).
        """
        cols = np.atleast_2d(np.asarray(cols))
        coefs = np.broadcast_to(np.asarray(coefs, dtype=float), cols.shape)
        rows = cols.shape[0]
        if rows == 0:
            return
        row_index = np.repeat(np.arange(self._m, self._m + rows), cols.shape[1])
        keep = (cols.ravel() >= 0) & (coefs.ravel() != 0)
        self._rows.append(row_index[keep])
        self._cols.append(cols.ravel()[keep])
        self._vals.append(coefs.ravel()[keep])
        self._row_lower.append(np.broadcast_to(np.asarray(lower, dtype=float), (rows,)).copy())
        self._row_upper.append(np.broadcast_to(np.asarray(upper, dtype=float), (rows,)).copy())
        start, stop = self.row_families.get(name, (self._m, self._m))
        if stop != self._m:
            raise ValueError(f"constraint family {name!r} added in two separate places")
        self.row_families[name] = (start, self._m + rows)
        self._m += rows

    def build(self) -> LinearProblem:
        """The problem as sparse matrix data."""
        concat = lambda parts, dtype=float: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)  # noqa: E731
        matrix = sp.csr_matrix(
            (concat(self._vals), (concat(self._rows, int), concat(self._cols, int))), shape=(self._m, self._n)
        )
        return LinearProblem(
            cost=concat(self._cost), matrix=matrix, row_lower=concat(self._row_lower), row_upper=concat(self._row_upper),
            col_lower=concat(self._lower), col_upper=concat(self._upper), integer=concat(self._integer, bool),
            offset=self.offset, families=dict(self.families), row_families=dict(self.row_families),
        )
