"""Devices, links and the cluster graph that routes transfers between devices.

Units are in the field names: bytes, bytes per second, seconds, FLOP per second.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from placement.errors import InputError

__all__ = ["Device", "Link", "Cluster", "NETWORKS"]

NETWORKS = ("switched", "shared")


@dataclass(frozen=True)
class Device:
    """A device that can run blocks.

    Attributes
    ----------
    name : str
    memory_bytes : float
        Memory available to the model and its caches, bytes.
    peak_flops_per_s : float
        Peak compute, FLOP/s.
    memory_bandwidth_bytes_per_s : float
        Memory bandwidth, bytes/s.
    compute_efficiency, memory_efficiency : float
        Achievable fraction of peak compute and of memory bandwidth, in (0, 1].
    reserved_bytes : float
        Memory held back for the OS and runtime, bytes (default 0).
    disk_bandwidth_bytes_per_s : float or None
        Sequential read bandwidth of local storage, bytes/s, if known.
    block_overhead_s : float
        Fixed time every block run costs on top of its roofline (kernel launch, framework
        dispatch), seconds (default 0). ``placement profile`` / calibration measure it.
    """

    name: str
    memory_bytes: float
    peak_flops_per_s: float
    memory_bandwidth_bytes_per_s: float
    compute_efficiency: float = 1.0
    memory_efficiency: float = 1.0
    reserved_bytes: float = 0.0
    disk_bandwidth_bytes_per_s: float | None = None
    block_overhead_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("memory_bytes", "peak_flops_per_s", "memory_bandwidth_bytes_per_s"):
            if not getattr(self, name) > 0:
                raise InputError(f"device {self.name!r}: `{name}` must be positive, got {getattr(self, name)!r}")
        for name in ("compute_efficiency", "memory_efficiency"):
            if not 0 < getattr(self, name) <= 1:
                raise InputError(f"device {self.name!r}: `{name}` must be in (0, 1], got {getattr(self, name)!r}")
        if not self.block_overhead_s >= 0:
            raise InputError(f"device {self.name!r}: `block_overhead` must be zero or more, got {self.block_overhead_s!r}")
        if not 0 <= self.reserved_bytes < self.memory_bytes:
            raise InputError(
                f"device {self.name!r}: `reserved_memory` ({self.reserved_bytes:.0f} B) must be at least 0 "
                f"and below `memory` ({self.memory_bytes:.0f} B)"
            )

    @property
    def usable_bytes(self) -> float:
        """Memory left for blocks: ``memory_bytes - reserved_bytes``."""
        return self.memory_bytes - self.reserved_bytes

    @property
    def flops_per_s(self) -> float:
        """Achievable compute: peak × compute efficiency, FLOP/s."""
        return self.peak_flops_per_s * self.compute_efficiency

    @property
    def bytes_per_s(self) -> float:
        """Achievable memory bandwidth: peak × memory efficiency, bytes/s."""
        return self.memory_bandwidth_bytes_per_s * self.memory_efficiency


@dataclass(frozen=True)
class Link:
    """An undirected link between two nodes (devices or switches).

    Attributes
    ----------
    u, v : str
        Endpoint names.
    bandwidth_bytes_per_s : float
        Bandwidth, bytes/s (each direction).
    latency_s : float
        One-way latency, seconds.
    """

    u: str
    v: str
    bandwidth_bytes_per_s: float
    latency_s: float

    def __post_init__(self) -> None:
        if self.u == self.v:
            raise InputError(f"link {self.u}–{self.v}: a link needs two different endpoints")
        if not self.bandwidth_bytes_per_s > 0:
            raise InputError(f"link {self.u}–{self.v}: `bandwidth` must be positive")
        if not self.latency_s >= 0:
            raise InputError(f"link {self.u}–{self.v}: `latency` must be zero or more")


@dataclass(frozen=True, eq=False)
class Cluster:
    """Devices joined by links, with the route between every pair of devices.

    Routes are the minimum-latency paths of the link graph (fewest hops on ties).
    A route's latency is the sum of its links' latencies and its bandwidth the
    smallest of theirs (store-and-forward is not modelled: a message streams
    through the route at its bottleneck).

    Attributes
    ----------
    devices : tuple of Device
    links : tuple of Link
    network : {"switched", "shared"}
        ``switched``: transfers between different device pairs run in parallel;
        ``shared``: one medium, every transfer waits for the others.
    switches : tuple of str
        Nodes that forward traffic but run nothing (a Wi-Fi access point, a switch).
    route_latency_s : ndarray, shape (N, N)
        Latency of the route from device i to j, seconds (0 on the diagonal).
    route_bandwidth_bytes_per_s : ndarray, shape (N, N)
        Bottleneck bandwidth of that route, bytes/s (inf on the diagonal).
    route_links : ndarray of object, shape (N, N)
        Indices into `links` along each route.
    """

    devices: tuple[Device, ...]
    links: tuple[Link, ...]
    network: str = "switched"
    switches: tuple[str, ...] = ()
    graph: nx.Graph = field(init=False, repr=False)
    route_latency_s: np.ndarray = field(init=False, repr=False)
    route_bandwidth_bytes_per_s: np.ndarray = field(init=False, repr=False)
    route_links: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.devices:
            raise InputError("`devices`: an instance needs at least one device")
        if self.network not in NETWORKS:
            raise InputError(f"`network`: must be one of {', '.join(NETWORKS)}, got {self.network!r}")
        names = [d.name for d in self.devices]
        duplicated = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(self.switches)))
        if duplicated:
            raise InputError(f"`devices`: the name(s) {', '.join(duplicated)} are used more than once; names must be unique")
        graph = nx.Graph()
        graph.add_nodes_from(names)
        graph.add_nodes_from(self.switches)
        for index, link in enumerate(self.links):
            for end in (link.u, link.v):
                if end not in graph:
                    raise InputError(
                        f"`links`: link {link.u}–{link.v} names {end!r}, which is neither a declared device "
                        f"nor a switch; declare it under `devices` or `switches` (devices: {', '.join(names)})"
                    )
            if graph.has_edge(link.u, link.v):
                raise InputError(f"`links`: {link.u}–{link.v} is given twice; keep one")
            # A tiny per-hop weight makes the shortest path prefer fewer hops when latencies tie.
            graph.add_edge(link.u, link.v, index=index, weight=link.latency_s + 1e-12)
        object.__setattr__(self, "graph", graph)
        self._route_all(names)

    def _route_all(self, names: list[str]) -> None:
        n = len(names)
        latency = np.zeros((n, n))
        bandwidth = np.full((n, n), np.inf)
        route_links = np.empty((n, n), dtype=object)
        for i in range(n):
            route_links[i, i] = ()
        paths = dict(nx.all_pairs_dijkstra_path(self.graph, weight="weight"))
        for i, j in itertools.permutations(range(n), 2):
            path = paths[names[i]].get(names[j])
            if path is None:
                raise InputError(
                    f"`links`: device {names[j]!r} cannot be reached from {names[i]!r}; add a link "
                    "(or a `mesh` default) so that every device has a route to every other"
                )
            hops = [self.graph.edges[a, b]["index"] for a, b in itertools.pairwise(path)]
            latency[i, j] = sum(self.links[h].latency_s for h in hops)
            bandwidth[i, j] = min(self.links[h].bandwidth_bytes_per_s for h in hops)
            route_links[i, j] = tuple(hops)
        for array in (latency, bandwidth):
            array.setflags(write=False)
        object.__setattr__(self, "route_latency_s", latency)
        object.__setattr__(self, "route_bandwidth_bytes_per_s", bandwidth)
        object.__setattr__(self, "route_links", route_links)

    @property
    def names(self) -> tuple[str, ...]:
        """Device names in index order."""
        return tuple(d.name for d in self.devices)

    def index(self, name: str) -> int:
        """Index of the device called `name`; `InputError` listing the names if unknown."""
        for i, device in enumerate(self.devices):
            if device.name == name:
                return i
        raise InputError(f"unknown device {name!r}; the devices are {', '.join(self.names)}")

    def route_time_s(self, nbytes: np.ndarray) -> np.ndarray:
        """Time to send one message of each size from every device to every other, seconds.

        Parameters
        ----------
        nbytes : ndarray, shape (R,)
            Message sizes, bytes.

        Returns
        -------
        ndarray, shape (R, N, N)
            ``latency + bytes / bandwidth`` along the route; 0 on the diagonal and for 0 bytes.
        """
        sizes = np.asarray(nbytes, dtype=float).reshape(-1, 1, 1)
        times = self.route_latency_s + sizes / self.route_bandwidth_bytes_per_s
        times[:, np.eye(len(self.devices), dtype=bool)] = 0.0
        return np.where(sizes > 0, times, 0.0)

    def pair_route(self, pair_bytes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Latency and bandwidth of the route each pair's message takes, given its size.

        Parameters
        ----------
        pair_bytes : ndarray, shape (N, N)
            Size of the message from ``u`` to ``v``, bytes.

        Returns
        -------
        latency_s, bandwidth_bytes_per_s : ndarray, shape (N, N)
        """
        return self.route_latency_s, self.route_bandwidth_bytes_per_s
