"""Devices, links and the cluster graph that routes transfers between devices.

Units are in the field names: bytes, bytes per second, seconds, FLOP per second.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from placement.errors import InputError

__all__ = ["Device", "Link", "Cluster", "NETWORKS", "ROUTINGS"]

NETWORKS = ("switched", "shared")
# "fastest": every message takes the fastest route, relayed through other nodes when that
# pays; "direct": two devices joined by a link use that link alone (as the head-partitioning
# authors' simulator does), other pairs the fastest route.
ROUTINGS = ("fastest", "direct")


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
    """Devices joined by links, with the routes between every pair of devices.

    A route's latency is the sum of its links' latencies and its bandwidth the
    smallest of theirs (store-and-forward is not modelled: a message streams
    through the route at its bottleneck). A message of ``n`` bytes takes the route
    with the least ``latency + n / bandwidth`` (`route_time_s`). That route is found
    among one candidate per bandwidth threshold ``β`` (every distinct link
    bandwidth): the minimum-latency path (fewest hops on ties) over the links of
    bandwidth ``β`` or more. The fastest path overall is one of them (its bottleneck
    is some ``β``, and the candidate for that ``β`` is no slower), so the choice is
    exact, never slower than a direct link, and done once per cluster, not per message.

    Attributes
    ----------
    devices : tuple of Device
    links : tuple of Link
    network : {"switched", "shared"}
        ``switched``: transfers between different device pairs run in parallel;
        ``shared``: one medium, every transfer waits for the others.
    switches : tuple of str
        Nodes that forward traffic but run nothing (a Wi-Fi access point, a switch).
    routing : {"fastest", "direct"}
        ``fastest`` (default): the routes above. ``direct``: two devices joined by a
        link of their own send over that link alone, even when a relay would be
        faster (the head-partitioning authors' simulator); other pairs as ``fastest``.
    route_latency_s : ndarray, shape (N, N)
        Latency of the minimum-latency route from device i to j, seconds (0 on the
        diagonal): the route of small messages.
    route_bandwidth_bytes_per_s : ndarray, shape (N, N)
        Bottleneck bandwidth of that route, bytes/s (inf on the diagonal).
    route_links : ndarray of object, shape (N, N)
        Indices into `links` along each such route.
    candidate_latency_s, candidate_bandwidth_bytes_per_s : ndarray, shape (B, N, N)
        The candidate route of every bandwidth threshold (index 0: the minimum-latency
        route above); latency inf where the threshold's links do not connect the pair.
    candidate_links : ndarray of object, shape (B, N, N)
    """

    devices: tuple[Device, ...]
    links: tuple[Link, ...]
    network: str = "switched"
    switches: tuple[str, ...] = ()
    routing: str = "fastest"
    graph: nx.Graph = field(init=False, repr=False)
    route_latency_s: np.ndarray = field(init=False, repr=False)
    route_bandwidth_bytes_per_s: np.ndarray = field(init=False, repr=False)
    route_links: np.ndarray = field(init=False, repr=False)
    candidate_latency_s: np.ndarray = field(init=False, repr=False)
    candidate_bandwidth_bytes_per_s: np.ndarray = field(init=False, repr=False)
    candidate_links: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.devices:
            raise InputError("`devices`: an instance needs at least one device")
        if self.network not in NETWORKS:
            raise InputError(f"`network`: must be one of {', '.join(NETWORKS)}, got {self.network!r}")
        if self.routing not in ROUTINGS:
            raise InputError(f"`routing`: must be one of {', '.join(ROUTINGS)}, got {self.routing!r}")
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
        thresholds = sorted({link.bandwidth_bytes_per_s for link in self.links}) or [np.inf]
        tables = [self._routes_above(names, beta) for beta in thresholds]
        latency, bandwidth, links = (np.stack([t[i] for t in tables]) for i in range(3))
        if self.routing == "direct":
            self._direct_only(names, latency, bandwidth, links)
        unreachable = np.argwhere(~np.isfinite(latency[0]))
        if len(unreachable):
            i, j = unreachable[0]
            raise InputError(
                f"`links`: device {names[j]!r} cannot be reached from {names[i]!r}; add a link "
                "(or a `mesh` default) so that every device has a route to every other"
            )
        for array in (latency, bandwidth):
            array.setflags(write=False)
        for name, value in (("candidate_latency_s", latency), ("candidate_bandwidth_bytes_per_s", bandwidth),
                            ("candidate_links", links), ("route_latency_s", latency[0]),
                            ("route_bandwidth_bytes_per_s", bandwidth[0]), ("route_links", links[0])):
            object.__setattr__(self, name, value)

    def _direct_only(self, names: list[str], latency, bandwidth, links) -> None:
        """Every candidate route of two linked devices becomes their link (in place)."""
        where = {name: i for i, name in enumerate(names)}
        for index, link in enumerate(self.links):
            if link.u in where and link.v in where:
                for i, j in ((where[link.u], where[link.v]), (where[link.v], where[link.u])):
                    latency[:, i, j], bandwidth[:, i, j] = link.latency_s, link.bandwidth_bytes_per_s
                    for b in range(links.shape[0]):
                        links[b, i, j] = (index,)

    def _routes_above(self, names: list[str], beta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Minimum-latency routes over the links of bandwidth `beta` or more: latency, bottleneck, links."""
        n = len(names)
        latency = np.zeros((n, n))
        bandwidth = np.full((n, n), np.inf)
        route_links = np.empty((n, n), dtype=object)
        for i in range(n):
            route_links[i, i] = ()
        wide = self.graph.edge_subgraph(
            [(a, b) for a, b, index in self.graph.edges(data="index") if self.links[index].bandwidth_bytes_per_s >= beta])
        paths = dict(nx.all_pairs_dijkstra_path(wide, weight="weight"))
        for i, j in itertools.permutations(range(n), 2):
            path = paths.get(names[i], {}).get(names[j])
            if path is None:
                latency[i, j], bandwidth[i, j], route_links[i, j] = np.inf, 1.0, ()
                continue
            hops = [self.graph.edges[a, b]["index"] for a, b in itertools.pairwise(path)]
            latency[i, j] = sum(self.links[h].latency_s for h in hops)
            bandwidth[i, j] = min(self.links[h].bandwidth_bytes_per_s for h in hops)
            route_links[i, j] = tuple(hops)
        return latency, bandwidth, route_links

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

    def route_index(self, nbytes) -> np.ndarray:
        """Which candidate route (`candidate_latency_s`) each message takes: the fastest for its size.

        Parameters
        ----------
        nbytes : float or ndarray, shape (...)
            Message sizes, bytes; a scalar, or one per device pair with shape (..., N, N).

        Returns
        -------
        ndarray of int, shape (..., N, N)
            Index into the candidates; ties go to the lowest index (the minimum-latency route).
        """
        sizes = np.asarray(nbytes, dtype=float)
        sizes = sizes if sizes.ndim >= 2 else sizes.reshape(sizes.shape + (1, 1))
        times = self.candidate_latency_s + sizes[..., None, :, :] / self.candidate_bandwidth_bytes_per_s
        return times.argmin(axis=-3)

    def message_time_s(self, nbytes) -> np.ndarray:
        """Time of one message from every device to every other on its fastest route, seconds.

        Unlike `route_time_s` an empty message still pays the route's latency (a block
        moved at an interval boundary is one message, whatever its size).

        Parameters
        ----------
        nbytes : float or ndarray, shape (...) or (..., N, N)
            Message sizes, bytes (a scalar or one per size, or one per device pair).

        Returns
        -------
        ndarray, shape (..., N, N)
            ``min over routes of latency + bytes / bandwidth``; 0 on the diagonal.
        """
        sizes = np.asarray(nbytes, dtype=float)
        sizes = sizes if sizes.ndim >= 2 else sizes.reshape(sizes.shape + (1, 1))
        times = (self.candidate_latency_s + sizes[..., None, :, :] / self.candidate_bandwidth_bytes_per_s).min(axis=-3)
        return np.where(np.eye(len(self.devices), dtype=bool), 0.0, times)

    def route_time_s(self, nbytes: np.ndarray) -> np.ndarray:
        """Time to send one message of each size from every device to every other, seconds.

        Parameters
        ----------
        nbytes : ndarray, shape (R,)
            Message sizes, bytes.

        Returns
        -------
        ndarray, shape (R, N, N)
            ``latency + bytes / bandwidth`` along the fastest route for the size; 0 on the
            diagonal and for 0 bytes.
        """
        sizes = np.asarray(nbytes, dtype=float).reshape(-1)
        return np.where(sizes[:, None, None] > 0, self.message_time_s(sizes), 0.0)
