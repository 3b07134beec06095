"""Sweeps: solve many (instance, method) pairs in parallel, each result cached on disk.

Each job's result is one JSON file in ``OUT/cache/`` named by a hash of the instance
file's contents, the method and its options, written atomically (temporary file, then
rename). A sweep skips the jobs whose file exists, so an interrupted sweep resumes
without redoing or losing work, and a result is never half-written. Jobs run on local
processes with joblib, or on a Dask cluster (``dask="tcp://HOST:PORT"``, or
``"local"`` for a LocalCluster) through joblib's Dask back end.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = ["Job", "job_key", "run_job", "run_sweep", "check_sweep_options", "DASK_TIMEOUT_S"]

DASK_TIMEOUT_S = 10.0  # seconds to reach a Dask scheduler before giving up with one line
_DASK_ADDRESS = re.compile(r"^(tcp|tls|ucx|inproc|ws|wss)://[^\s:/]+(:\d{1,5})?/?$")


def check_sweep_options(*, n_jobs: int = 2, dask: str | None = None, time_limit: float | None = None) -> None:
    """Check a sweep's options before any job starts.

    Parameters
    ----------
    n_jobs : int
        Local worker processes, at least 1.
    dask : str, optional
        ``"local"`` or a scheduler address such as ``tcp://HOST:PORT``.
    time_limit : float, optional
        Seconds per job, positive and finite.

    Raises
    ------
    InputError
        Naming the option and a valid value.
    """
    from placement.errors import InputError

    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise InputError(f"`--jobs` must be a whole number of worker processes, at least 1, got {n_jobs!r}")
    if dask is not None and dask != "local" and not _DASK_ADDRESS.match(dask):
        raise InputError(f"`--dask` must be 'local' or a scheduler address such as tcp://10.0.0.5:8786, got {dask[:80]!r}")
    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        raise InputError(f"`--time-limit` must be a positive number of seconds, got {time_limit!r}")


@dataclass(frozen=True)
class Job:
    """One (instance, method, options) to solve. `instance` is a shipped name or a file path."""

    instance: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)


def _instance_text(name: str) -> str:
    from placement.instance import instances_dir

    path = Path(name)
    if not path.is_file():
        path = instances_dir() / f"{name}.yaml"
    from placement.files import read_text

    return read_text(path, "instance")


def job_key(job: Job) -> str:
    """Hash of the instance's file contents, the method and its options: the cache file's name."""
    payload = json.dumps([_instance_text(job.instance), job.method, job.options], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def run_job(job: Job) -> dict[str, Any]:
    """Solve one job and summarize it (figures from the evaluator's report)."""
    import placement

    started = time.perf_counter()
    instance = placement.load_instance(job.instance)
    result = placement.solve(instance, method=job.method, **job.options)
    report = result.report
    return {
        "instance": job.instance,
        "method": job.method,
        "options": job.options,
        "status": result.status,
        "message": result.message,
        "total_s": None if report is None else report.total_s,
        "mean_token_s": None if report is None else report.mean_token_s,
        "ttft_s": None if report is None else report.ttft_s,
        "migration_s": None if report is None else float(report.migration_s.sum()),
        "peak_memory_bytes": None if report is None else float(report.peak_memory_bytes.max()),
        "feasible": None if report is None else report.feasible,
        "bound_s": result.bound,
        "solve_time_s": result.solve_time_s,
        "decision_median_s": result.stats.get("decision_time_median_s"),  # result.STATS: online methods
        "wall_s": time.perf_counter() - started,
    }


def _cached_run(job: Job, cache: str) -> dict[str, Any]:
    path = Path(cache) / f"{job_key(job)}.json"
    if path.is_file():
        return json.loads(path.read_text())
    from placement.files import json_ready, write_text_atomic

    row = run_job(job)
    write_text_atomic(path, json.dumps(json_ready(row), indent=1, allow_nan=False))
    return row


@contextlib.contextmanager
def _backend(dask: str | None) -> Iterator[None]:
    if dask is None:
        yield
        return
    try:
        import joblib
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:
        from placement.errors import SolverNotInstalledError

        raise SolverNotInstalledError("`--dask` needs Dask: pip install 'llm-placement[dask]'") from exc
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) if dask == "local" else None
    try:
        client = Client(cluster if cluster is not None else dask, timeout=DASK_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - a refused, timed-out or garbled connection: the environment
        # failed, which the CLI prints as one line with exit code 1
        raise OSError(f"cannot connect to the Dask scheduler {dask!r} ({type(exc).__name__}; waited at most "
                      f"{DASK_TIMEOUT_S:.0f} s); check the address and that the scheduler runs") from None
    with client, joblib.parallel_backend("dask"):
        del client
        yield
    if cluster is not None:
        cluster.close()


def run_sweep(jobs: list[Job], out_dir: str | Path, *, n_jobs: int = 2, dask: str | None = None,
              progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Run `jobs` (skipping cached ones) and return one row per job, in the order given.

    Parameters
    ----------
    jobs : list of Job
    out_dir : path
        Results are cached in ``out_dir/cache``.
    n_jobs : int
        Local worker processes (joblib), when `dask` is None.
    dask : str, optional
        ``"local"`` for a Dask LocalCluster, or a scheduler address ``tcp://HOST:PORT``.
    progress : callable, optional
        Called with (done, total) as results arrive.

    Returns
    -------
    list of dict
        `run_job`'s rows.
    """
    import joblib

    check_sweep_options(n_jobs=n_jobs, dask=dask)
    cache = Path(out_dir) / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any] | None] = [None] * len(jobs)
    pending = []
    for i, job in enumerate(jobs):
        path = cache / f"{job_key(job)}.json"
        if path.is_file():
            rows[i] = json.loads(path.read_text())
        else:
            pending.append(i)
    done = len(jobs) - len(pending)
    if progress:
        progress(done, len(jobs))
    if pending:
        with _backend(dask):
            parallel = joblib.Parallel(n_jobs=n_jobs if dask is None else -1, return_as="generator")
            results = parallel(joblib.delayed(_cached_run)(jobs[i], str(cache)) for i in pending)
            for i, row in zip(pending, results):
                rows[i] = row
                done += 1
                if progress:
                    progress(done, len(jobs))
    return [row for row in rows if row is not None]
