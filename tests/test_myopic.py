"""The myopic back end (Kafetzis et al., Algorithm 1) against the evaluator, the MILP and a hand-worked case.

Every plan must be valid (one placement per interval, whole blocks), its objective
the evaluator's total, never below the MILP's proven optimum; both scoring modes
run; decision times are recorded; on a tiny instance the demand order, the scores
and the assignment are the ones worked out by hand in `test_hand_worked_max_score`.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

from placement import InputError, evaluate, instance_names, load_instance
from placement.instance import instance_from_dict
from placement.plan import Placement, Plan
from placement.solvers.milp import solve_milp
from placement.solvers.myopic import SCORINGS, decide, solve_myopic

PAPER_SMALL = [name for name in instance_names() if name.startswith("paper-small/")]
# MILP optimum in well under 2 s each; the other paper-small instances take up to ~7 s.
FAST_MILP = [
    "paper-small/h8-3dev-medium-s1-roofline",
    "paper-small/h8-3dev-medium-s1-kafetzis",
    "paper-small/h16-5dev-medium-s1-kafetzis",
    "paper-small/h16-4dev-medium-s1-kafetzis",
    "paper-small/h16-5dev-low-s1-roofline",
    "paper-small/h8-4dev-medium-s1-roofline",
]
SLOW_MILP = [name for name in PAPER_SMALL if name not in FAST_MILP]
JUDGED = PAPER_SMALL + ["edge/llama-3.2-1b-2dev"]


@functools.cache
def instance(name: str):
    return load_instance(name)


@functools.cache
def myopic(name: str, scoring: str = "max"):
    return solve_myopic(instance(name), scoring=scoring)


@functools.cache
def optimum(name: str):
    return solve_milp(instance(name))


def assert_valid(inst, plan: Plan) -> None:
    """One placement per interval, every block whole on one device of the instance."""
    L, K, N = inst.model.layers, inst.model.kv_heads, inst.n_devices
    assert plan.devices == inst.cluster.names
    assert len(plan.intervals) == inst.workload.n_intervals
    for p in plan.intervals:
        att = np.asarray(p.attention)
        assert att.shape == (L, K) and np.issubdtype(att.dtype, np.integer)
        assert att.min() >= 0 and att.max() < N
        for rows in (np.asarray(p.projection), np.asarray(p.ffn)):
            assert rows.shape == (L, N)
            assert np.isin(rows, (0.0, 1.0)).all() and (rows.sum(axis=1) == 1).all()
        assert isinstance(p.embed, int) and 0 <= p.embed < N
        assert isinstance(p.lm_head, int) and 0 <= p.lm_head < N
        assert p.precision is None
    Plan.from_json(plan.to_json())  # round-trips


def moves(a: Placement, b: Placement) -> int:
    return int((a.attention != b.attention).sum() + (a.projection != b.projection).any(axis=1).sum()
               + (a.ffn != b.ffn).any(axis=1).sum() + (a.embed != b.embed) + (a.lm_head != b.lm_head))


# ----------------------------------------------------------------------------- judged by the evaluator
@pytest.mark.parametrize("scoring", SCORINGS)
@pytest.mark.parametrize("name", JUDGED)
def test_plans_are_feasible_and_predict_nothing(name, scoring):
    inst, result = instance(name), myopic(name, scoring)
    assert result.status == "feasible", result.message
    assert_valid(inst, result.plan)
    report = evaluate(inst, result.plan)
    assert report.feasible
    assert result.backend_objective is None  # the greedy scores devices; it predicts no latency
    assert result.stats["scoring"] == scoring


@pytest.mark.parametrize("name", JUDGED)
def test_decision_times_and_moves_recorded(name):
    inst, result = instance(name), myopic(name)
    stats = result.stats
    times = stats["decision_times_s"]
    assert len(times) == stats["intervals"] == inst.workload.n_intervals
    assert all(t > 0 for t in times)
    assert stats["decision_time_median_s"] == pytest.approx(float(np.median(times)))
    assert stats["decision_time_max_s"] == max(times)
    plan = result.plan.intervals
    assert stats["blocks_moved"] == sum(moves(a, b) for a, b in itertools.pairwise(plan))
    # the evaluator charges migration exactly when something moved
    assert (result.report.migration_s.sum() > 0) == (stats["blocks_moved"] > 0)


def test_one_decision_per_interval_on_eight_devices():
    result = solve_myopic(load_instance("edge/llama-3.1-8b-8dev"))
    assert result.stats["intervals"] == len(result.stats["decision_times_s"]) == 32


# ----------------------------------------------------------------------------- never below the optimum
def _check_against_optimum(name: str) -> None:
    best = optimum(name)
    assert best.status == "optimal", best.message
    for scoring in SCORINGS:
        assert myopic(name, scoring).objective >= best.objective * (1 - 1e-9)


@pytest.mark.parametrize("name", FAST_MILP)
def test_never_below_the_milp_optimum(name):
    _check_against_optimum(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_MILP)
def test_never_below_the_milp_optimum_slow(name):
    _check_against_optimum(name)


# ----------------------------------------------------------------------------- worked by hand
def hand_instance(latency: str = "400 ns", *, check_capacity: bool = True, **changes):
    """One layer, two groups (r=1, d=4, D=8), plain FFN of 16, vocab 128, 8 bits everywhere; P=4, T=2 (S=6).

    Memory (bytes): group 96 + KV 2·4·6 = 144, projection 64, FFN 256, embed 1024,
    lm_head 1024. FLOPs: group 2·96 + 4·4·6 = 288, projection 128, FFN 512,
    lm_head 2048. A: 1500 B, 4 GFLOPS; B: 4000 B, 1 GFLOPS; both 1 TB/s, so every
    block is compute-bound (the embedding reads 8 B: 0.008 ns).
    """
    data = {
        "name": "hand",
        "model": {"name": "tiny-hand", "layers": 1, "hidden": 8, "heads": 2, "kv_heads": 2, "head_dim": 4,
                  "ffn_hidden": 16, "gated_ffn": False, "vocab": 128, "tied_embeddings": False,
                  "weight_bits": 8, "kv_bits": 8, "activation_bits": 8},
        "devices": [{"name": "A", "memory": "1500 B", "peak_flops": "4 GFLOPS", "memory_bandwidth": "1 TB/s"},
                    {"name": "B", "memory": "4000 B", "peak_flops": "1 GFLOPS", "memory_bandwidth": "1 TB/s"}],
        "links": [{"between": ["A", "B"], "bandwidth": "1 GB/s", "latency": latency}],
        "workload": {"prompt_tokens": 4, "generate_tokens": 2},
    }
    data.update(changes)
    return instance_from_dict(data, source="hand", check_capacity=check_capacity)


def test_hand_worked_max_score():
    """The order, the scores and the assignment, worked out by hand.

    Times on A (ns): group 72, projection 32, FFN 128, lm_head 512, embed 0.008; on B four
    times as long (the embedding's 0.008 on both). T_ref = whole model on A =
    2·72 + 32 + 128 + 512 + 0.008 = 816.008 ns. max_j M_j = 4000 B.

    demand = mem/4000 + (time on A)/T_ref:
      lm_head 0.256 + 0.6275 = 0.883; embed 0.256 + 0.00001 = 0.256; FFN 0.064 + 0.1569 = 0.221;
      group 0.036 + 0.0882 = 0.124 (twice); projection 0.016 + 0.0392 = 0.055.

    Scores max(mem/M_j, t_j/T_ref, comm_j/T_ref), free memory in brackets:
      lm_head: A max(1024/1500, 512/816) = 0.6827, B max(0.256, 2048/816) = 2.5098 → A [476 left]
      embed:   A has no room; B max(0.256, 0, (400+4)/816 = 0.4951) = 0.4951 → B
      FFN:     A max(256/1500, 128/816) = 0.1707, B max(0.064, 512/816) = 0.6274 → A [220 left]
      group:   A max(0.096, 0.0882, (400+8)/816 = 0.5000), B max(0.036, 288/816) = 0.3529 → B (twice)
      projection (both groups on B: one message of 8 B to A):
               A max(0.0427, 0.0392, 0.5000) = 0.5000, B max(0.016, 128/816) = 0.1569 → B
    """
    inst = hand_instance()
    d = decide(inst, 0)
    assert d.context == 6
    assert d.budget_s == pytest.approx(816.008e-9, rel=1e-9)
    assert d.order == ("lm_head", "embed", "ffn[0]", "attention[0,0]", "attention[0,1]", "projection[0]")
    np.testing.assert_allclose(d.demand, [0.256 + 512 / 816.008, 0.256 + 0.008 / 816.008, 0.064 + 128 / 816.008,
                                          0.036 + 72 / 816.008, 0.036 + 72 / 816.008, 0.016 + 32 / 816.008], rtol=1e-9)
    T = 816.008
    expected = [
        [1024 / 1500, 2048 / T],
        [np.inf, 404 / T],
        [256 / 1500, 512 / T],
        [408 / T, 288 / T],
        [408 / T, 288 / T],
        [408 / T, 128 / T],
    ]
    np.testing.assert_allclose(d.scores, expected, rtol=1e-9)
    assert d.devices.tolist() == [0, 1, 0, 1, 1, 1]
    p = d.placement
    assert p.attention.tolist() == [[1, 1]]
    assert p.projection.tolist() == [[0.0, 1.0]] and p.ffn.tolist() == [[1.0, 0.0]]
    assert (p.embed, p.lm_head) == (1, 0)
    assert d.fallbacks == () and d.homeless == ()
    result = solve_myopic(inst)
    assert result.status == "feasible"
    assert result.plan.intervals[0].attention.tolist() == [[1, 1]]


def test_hand_worked_without_latency_the_first_group_stays_on_a():
    """With no link latency the layer input costs 8 ns (0.0098 of T_ref): group 0 scores 0.096 on A and
    goes there (A then has 220 - 144 = 76 B left), group 1 no longer fits on A and goes to B."""
    d = decide(hand_instance("0 s"), 0)
    assert d.placement.attention.tolist() == [[0, 1]]
    assert d.scores[3, 0] == pytest.approx(144 / 1500, rel=1e-9)
    assert d.scores[4, 0] == np.inf


def test_hand_worked_weighted_score():
    """0.4·compute + 0.3·memory + 0.3·comm on the same instance: the same assignment.

    group on A: 0.4·72/T + 0.3·144/1500 + 0.3·408/T = 0.2141; on B: 0.4·288/T + 0.3·144/4000 = 0.1520 → B.
    """
    d = decide(hand_instance(), 0, scoring="weighted", weights=(0.4, 0.3, 0.3))
    T = 816.008
    assert d.scores[3, 0] == pytest.approx(0.4 * 72 / T + 0.3 * 144 / 1500 + 0.3 * 408 / T, rel=1e-9)
    assert d.scores[3, 1] == pytest.approx(0.4 * 288 / T + 0.3 * 144 / 4000, rel=1e-9)
    assert d.devices.tolist() == [0, 1, 0, 1, 1, 1]
    # all weight on memory: the big device wins every block it has room for
    d = decide(hand_instance(), 0, scoring="weighted", weights=(0, 1, 0))
    assert d.devices.tolist() == [1, 1, 1, 1, 1, 1]


def test_fallback_when_no_device_scores_at_most_one():
    """A 1 ms link: the embedding (no room on A) reaches B only with comm (1 ms + 4 ns)/T_ref > 1."""
    d = decide(hand_instance("1 ms"), 0)
    assert d.fallbacks == ("embed",)
    assert d.placement.embed == 1
    assert d.scores[1, 1] == pytest.approx((1e-3 + 4e-9) / 816.008e-9, rel=1e-9)


def test_ties_keep_the_current_placement():
    """Two identical devices that each hold the model: every block scores the same on both (the link is
    too fast to matter), so each stays where `current` has it; with no current state, the lowest index wins."""
    same = {"memory": "8000 B", "peak_flops": "1 GFLOPS", "memory_bandwidth": "1 TB/s"}
    inst = hand_instance(devices=[{"name": "A", **same}, {"name": "B", **same}],
                         links=[{"between": ["A", "B"], "bandwidth": "1 PB/s", "latency": "0 s"}],
                         workload={"prompt_tokens": 4, "generate_tokens": 4, "interval": 2})
    fresh = solve_myopic(inst)
    for p in fresh.plan.intervals:
        assert p.attention.tolist() == [[0, 0]] and (p.embed, p.lm_head) == (0, 0)
    current = Placement(attention=np.array([[0, 1]]), projection=np.array([[0.0, 1.0]]),
                        ffn=np.array([[1.0, 0.0]]), embed=1, lm_head=0)
    result = solve_myopic(inst, current=current)
    assert result.stats["blocks_moved_from_current"] == 0 and result.stats["blocks_moved"] == 0
    for p in result.plan.intervals:
        assert p.attention.tolist() == [[0, 1]] and p.projection.tolist() == [[0.0, 1.0]]
        assert p.ffn.tolist() == [[1.0, 0.0]] and (p.embed, p.lm_head) == (1, 0)


def test_no_memory_anywhere_is_infeasible():
    speed = {"memory_bandwidth": "1 TB/s"}
    inst = hand_instance(devices=[{"name": "A", "memory": "700 B", "peak_flops": "4 GFLOPS", **speed},
                                  {"name": "B", "memory": "900 B", "peak_flops": "1 GFLOPS", **speed}],
                         check_capacity=False)
    result = solve_myopic(inst)
    assert result.status == "infeasible"
    assert "does not fit" in result.message and "lm_head" in result.message
    assert result.stats["homeless"]
    assert not result.success
    assert_valid(inst, result.plan)


# ----------------------------------------------------------------------------- options
def test_tau_must_be_the_instances_interval():
    name = "paper-small/h8-3dev-medium-s1-roofline"
    inst = instance(name)
    assert solve_myopic(inst, tau=inst.workload.tau).objective == myopic(name).objective
    with pytest.raises(InputError, match=r"`tau` = 2 tokens differs .*`workload.interval: 2`"):
        solve_myopic(inst, tau=2)
    for bad in (0, True, 1.5):
        with pytest.raises(InputError, match="`tau`"):
            solve_myopic(inst, tau=bad)


def test_tau_of_the_whole_generation():
    inst = hand_instance()  # no interval: one decision for the whole generation (T = 2)
    assert solve_myopic(inst, tau=2).stats["intervals"] == 1
    assert solve_myopic(inst, tau=100).stats["tau"] == 100


@pytest.mark.parametrize("options, match", [
    ({"scoring": "sum"}, "`scoring` must be one of"),
    ({"weights": (1, 1)}, "three numbers"),
    ({"weights": (0, 0, 0)}, "not all 0"),
    ({"weights": (-1, 1, 1)}, "at least 0"),
    ({"weights": "abc"}, "three numbers"),
])
def test_bad_options(options, match):
    with pytest.raises(InputError, match=match):
        solve_myopic(hand_instance(), **options)


def test_bad_current_and_interval():
    inst = hand_instance()
    with pytest.raises(InputError, match=r"`current.attention`"):
        solve_myopic(inst, current=Placement(np.array([[0, 5]]), np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]), 0, 0))
    with pytest.raises(InputError, match=r"`current.ffn`"):
        solve_myopic(inst, current=Placement(np.array([[0, 1]]), np.array([[1.0, 0.0]]), np.array([1.0, 0.0]), 0, 0))
    with pytest.raises(InputError, match="`current` must be a Placement"):
        solve_myopic(inst, current="A")
    with pytest.raises(InputError, match="`k`"):
        decide(inst, 1)


@pytest.mark.parametrize("name", ["edge/llama-3.2-1b-2dev", "edge/llama-3.2-1b-4dev", "paper-small/h8-3dev-low-s1-kafetzis",
                                  "paper-small/h16-5dev-low-s1-roofline"])
def test_memory_accounting_is_the_evaluators(name):
    """What each decision believes every device holds is the evaluator's peak memory (tied embeddings included)."""
    inst = instance(name)
    report = myopic(name).report
    previous = None
    for k in range(inst.workload.n_intervals):
        d = decide(inst, k, previous)
        np.testing.assert_allclose(d.memory_bytes, report.peak_memory_bytes[k], rtol=1e-12)
        previous = d.placement
