"""Over-the-air all-reduce (method `ota`, docs/ota.md): beamforming, SSCA, the evaluator's `ota` collective."""

from __future__ import annotations

import math

import numpy as np
import pytest

from placement import InputError, PlanError, evaluate, solve
from placement.instance import instance_from_dict
from placement.ota.allreduce import OtaContext
from placement.ota.assignment import capped_simplex_projection, expected_mse, share_caps, ssca_assignment
from placement.ota.baselines import fdma_mse, ofdma_rates_bps, quantization_mse
from placement.ota.beamforming import (beamformer_mse, gram, matched_filter_beamformer, sdr_beamformer,
                                       single_device_mse, zf_precoders)
from placement.ota.channel import sample_channels, wireless_from_mapping
from placement.solvers.ota import layer_constants, solve_ota

TINY = {"name": "tiny", "layers": 2, "hidden": 64, "heads": 4, "kv_heads": 4, "head_dim": 16, "ffn_hidden": 128,
        "gated_ffn": True, "vocab": 256, "tied_embeddings": False}


def _wireless(n: int, **extra):
    return {"server_antennas": 4, "device_antennas": 2, "bandwidth": "10 MHz", "noise_power": "-90 dBm",
            "path_loss": [f"{60 + 5 * i} dB" for i in range(n)], "max_power": "20 dBm", "downlink_rate": "1 Gbit/s",
            **extra}


def _instance(n: int = 3, wireless: dict | None = None, model=TINY):
    devices = [{"name": f"d{i}", "memory": "1 GiB", "peak_flops": "1 TFLOPS", "memory_bandwidth": "10 GB/s"} for i in range(n)]
    data = {"name": "ota", "model": model, "devices": devices, "mesh": {"bandwidth": "1 Gbit/s", "latency": "1 ms"},
            "workload": {"prompt_tokens": 4, "generate_tokens": 3}}
    if wireless is not False:
        data["wireless"] = _wireless(n) if wireless is None else wireless
    return instance_from_dict(data)


def _channels(rng, n, n_r, n_t, spread=True):
    H = (rng.standard_normal((n, n_r, n_t)) + 1j * rng.standard_normal((n, n_r, n_t))) / math.sqrt(2)
    return H * np.sqrt(rng.uniform(0.05, 1.0, n))[:, None, None] if spread else H


# ----------------------------------------------------------------------------- wireless section
def test_wireless_section_parses_units():
    inst = _instance(2, _wireless(2, bandwidth="20 MHz", noise_power="-90 dBm", max_power=["20 dBm", 0.5],
                                   energy_per_token="50 mJ", compute_energy="5 pJ", overhead="0.1 ms"))
    w = inst.wireless
    assert w.bandwidth_hz == 20e6 and w.noise_power_w == pytest.approx(1e-12)
    assert w.max_power_w == pytest.approx([0.1, 0.5])
    assert w.path_gain == pytest.approx([1e-6, 10 ** -6.5])
    assert w.energy_per_token_j == pytest.approx([0.05, 0.05]) and w.compute_energy_j_per_flop == pytest.approx([5e-12] * 2)
    assert w.overhead_s == pytest.approx(1e-4) and w.downlink_bits_per_s == 1e9


def test_distance_path_loss():
    w = wireless_from_mapping({**_wireless(2), "path_loss": None, "distance": ["10 m", "100 m"], "path_loss_exponent": 3,
                               "reference_loss": "30 dB"}, ("a", "b"))
    assert 10 * np.log10(1 / w.path_gain) == pytest.approx([60.0, 90.0])


def test_instances_without_wireless_are_unchanged():
    assert _instance(2, wireless=False).wireless is None


@pytest.mark.parametrize("change, message", [
    ({"bandwidth": "20 ms"}, r"`wireless.bandwidth`: '20 ms' is not in units of Hz"),
    ({"noise_power": "loud"}, r"`wireless.noise_power`: cannot read 'loud'"),
    ({"streams": 3}, r"`wireless.streams` \(3\) must not exceed the antennas"),
    ({"path_loss": ["60 dB"]}, r"`wireless.path_loss`: give one value, or one per device \(2\)"),
    ({"path_loss": None}, r"give each device's `path_loss`"),
    ({"fading": "rician"}, r"`wireless.rician_k` is missing"),
    ({"max_power": "-5 W"}, r"`wireless.max_power`: must be positive"),
    ({"antennas": 4}, r"`wireless.antennas`: unknown field"),
])
def test_bad_wireless_fields_are_named(change, message):
    fields = {k: v for k, v in {**_wireless(2), **change}.items() if v is not None}
    with pytest.raises(InputError, match=message):
        _instance(2, fields)


def test_channels_are_seeded_and_scaled():
    w = _instance(3).wireless
    H = sample_channels(w, 4000, seed=7)
    assert H.shape == (4000, 3, 4, 2)
    assert np.array_equal(H, sample_channels(w, 4000, seed=7)) and not np.array_equal(H, sample_channels(w, 4000, seed=8))
    power = np.mean(np.abs(H) ** 2, axis=(0, 2, 3))
    assert power == pytest.approx(w.path_gain, rel=0.05)
    rician = wireless_from_mapping({**_wireless(3), "fading": "rician", "rician_k": "10 dB"}, ("a", "b", "c"))
    assert np.mean(np.abs(sample_channels(rician, 4000, 1)) ** 2, axis=(0, 2, 3)) == pytest.approx(rician.path_gain, rel=0.05)


# ----------------------------------------------------------------------------- short timescale
def test_zero_forcing_aligns_every_device_and_meets_power():
    rng = np.random.default_rng(0)
    H = _channels(rng, 4, 6, 3)
    A = rng.standard_normal((6, 2)) + 1j * rng.standard_normal((6, 2))
    B = zf_precoders(A, H)
    for n in range(4):
        assert A.conj().T @ H[n] @ B[n] == pytest.approx(np.eye(2), abs=1e-10)
    power = rng.uniform(0.5, 2, 4)
    mse, eta = beamformer_mse(A, gram(H), power, 0.1)
    B = zf_precoders(np.sqrt(eta) * A, H)
    assert np.sum(np.abs(B) ** 2, axis=(1, 2)).max() / power[np.argmax(np.sum(np.abs(B) ** 2, axis=(1, 2)) / power)] == pytest.approx(1.0)
    assert mse == pytest.approx(0.1 * eta * np.sum(np.abs(A) ** 2) / 2)


def test_hand_worked_single_antenna_mse():
    # N_r = 1: gains |h|² = 4 and 1, powers 1 and 2, σ² = 0.1 → MSE = σ² / min(4·1, 1·2) = 0.05
    H = np.array([[[2.0]], [[1.0]]], dtype=complex)
    design = sdr_beamformer(H, np.array([1.0, 2.0]), 0.1)
    assert design.mse == pytest.approx(0.05) and design.bound == pytest.approx(0.05)


@pytest.mark.parametrize("seed", range(10))
def test_sdr_matches_closed_forms(seed):
    rng = np.random.default_rng(seed)
    # one receive antenna (any device antennas): σ² / min_n P_n‖h_n‖²
    H = _channels(rng, 5, 1, 3)
    power = rng.uniform(0.5, 2, 5)
    design = sdr_beamformer(H, power, 0.1)
    assert design.mse == pytest.approx(0.1 / np.min(power * np.sum(np.abs(H) ** 2, axis=(1, 2))), rel=1e-9)
    # one device: along the strongest eigenvector, σ²(Σ λ_i^{-1/2})²/(P d)
    for streams in (1, 2):
        H1 = _channels(rng, 1, 6, 2)
        one = sdr_beamformer(H1, np.array([0.7]), 0.1, streams)
        assert one.mse == pytest.approx(single_device_mse(gram(H1[0]), 0.7, 0.1, streams), rel=1e-9)


def test_sdr_bound_below_achieved_and_randomization_feasible():
    rng = np.random.default_rng(3)
    for trial in range(60):
        n, n_r, n_t = rng.integers(2, 7), rng.integers(2, 9), rng.integers(1, 4)
        streams = int(rng.integers(1, min(n_r, n_t) + 1))
        H = _channels(rng, n, n_r, n_t)
        power = rng.uniform(0.1, 3.0, n)
        design = sdr_beamformer(H, power, 0.05, streams, randomizations=10, rng=trial)
        assert design.bound <= design.mse * (1 + 1e-9)
        A = np.sqrt(design.eta) * design.direction
        B = zf_precoders(A, H)
        assert np.all(np.sum(np.abs(B) ** 2, axis=(1, 2)) <= power * (1 + 1e-9))
        assert design.mse == pytest.approx(0.05 * np.sum(np.abs(A) ** 2) / streams)
        baseline = matched_filter_beamformer(H, power, 0.05, streams)
        assert design.bound <= baseline.mse * (1 + 1e-9)


def test_sdr_beats_matched_filter_on_average():
    rng = np.random.default_rng(5)
    ratios = []
    for _ in range(10):
        H, power = _channels(rng, 6, 8, 2), np.ones(6)
        ratios.append(matched_filter_beamformer(H, power, 0.1).mse / sdr_beamformer(H, power, 0.1).mse)
    assert min(ratios) >= 1 - 1e-9 and np.mean(ratios) > 1.5


def test_non_positive_power_is_an_error():
    with pytest.raises(InputError, match="positive transmit power"):
        sdr_beamformer(_channels(np.random.default_rng(0), 2, 3, 1), np.array([1.0, 0.0]), 0.1)


# ----------------------------------------------------------------------------- baselines and time
def test_time_and_baseline_formulas_by_hand():
    # 10 MHz, one stream, 1 Gbit/s broadcast: 4096 16-bit elements (8192 bytes)
    air = OtaContext("aircomp", 1 / 10e6, 1, 10e6, 1.0, 1 / 1e9, 0.0, 16)
    assert air.time_s(8192) == pytest.approx(4096 / 10e6 + 4096 * 16 / 1e9)
    fdma = OtaContext("analog-fdma", 4 / 10e6, 1, 10e6, 4.0, 1 / 1e9, 0.0, 16)
    assert fdma.time_s(8192) == pytest.approx(4 * 4096 / 10e6 + 4096 * 16 / 1e9)
    assert quantization_mse(3, 8) == pytest.approx(3 * (8 / 256) ** 2 / 12)
    # one antenna each side, gain 1, power 1, σ² = 1, two devices: each gets 5 MHz at SNR 2 → 5e6·log2(3)
    H = np.ones((1, 2, 1, 1), dtype=complex)
    assert ofdma_rates_bps(H, np.ones(2), 1.0, 10e6)[0] == pytest.approx([5e6 * np.log2(3)] * 2)
    assert fdma_mse(H, np.ones(2), 1.0, 1) == pytest.approx([2 * 0.5])


def test_ota_beats_digital_in_the_paper_regime():
    # AirComp's uplink takes ⌈M/d⌉/W whatever N; digital OFDMA takes q·M·N/(W·SE): AirComp is faster once the
    # weakest device's spectral efficiency on its share falls below q·N·d (here, 98-112 dB of path loss, SE < 8·N·1).
    for n in (2, 4, 8):
        inst = _instance(n, _wireless(n, path_loss=[f"{98 + 2 * i} dB" for i in range(n)]))
        air = solve_ota(inst, assignment="equal", samples=4)
        digital = solve_ota(inst, scheme="digital", samples=4)
        assert air.report.mean_token_s < digital.report.mean_token_s
        assert air.report.breakdown_s["decode_transfer"] < digital.report.breakdown_s["decode_transfer"]


# ----------------------------------------------------------------------------- long timescale
def test_capped_simplex_projection():
    caps = np.array([0.3, 1.0, 1.0])
    m = capped_simplex_projection(np.array([2.0, 0.1, -1.0]), caps)
    assert m.sum() == pytest.approx(1) and np.all(m >= 0) and np.all(m <= caps + 1e-12)
    assert m == pytest.approx([0.3, 0.7, 0.0])
    with pytest.raises(InputError, match="sum to 0.6000 < 1"):
        capped_simplex_projection(np.ones(2), np.array([0.3, 0.3]))


def _energy_case():
    n = 4
    inst = _instance(n, _wireless(n, server_antennas=6, path_loss=["70 dB", "80 dB", "85 dB", "75 dB"],
                                  energy_per_token="1 uJ", compute_energy=["4 pJ", "6 pJ", "5 pJ", "8 pJ"]))
    return inst


def test_ssca_decreases_the_objective_and_keeps_every_constraint():
    inst = _energy_case()
    w, const = inst.wireless, layer_constants(inst)
    usable = np.array([d.usable_bytes for d in inst.devices])
    memory_caps = np.array([0.6, 1.0, 1.0, 1.0])  # device 0's memory holds at most 60 % of the layers
    caps = share_caps(w, const["flops"], memory_caps)
    uses = 2 * inst.model.layers * inst.model.hidden
    result = ssca_assignment(w, const["flops"], caps, uses, iterations=60, seed=1)
    m = result.shares
    assert m.sum() == pytest.approx(1) and np.all(m >= 0) and np.all(m <= caps + 1e-12)
    assert m[0] <= 0.6 + 1e-12 and np.all(m * const["layer_bytes"] <= usable)
    assert np.all(w.compute_energy_j_per_flop * m * const["flops"] < w.energy_per_token_j)  # energy left to transmit
    channels = sample_channels(w, 24, seed=123)
    before = expected_mse(w, np.full(4, 0.25), const["flops"], uses, channels)
    after = expected_mse(w, m, const["flops"], uses, channels)
    assert after < before
    trace = [row["sampled_mse"] for row in result.trace]
    assert np.mean(trace[-10:]) < np.mean(trace[:10])


# ----------------------------------------------------------------------------- solver and evaluator
@pytest.mark.parametrize("options", [{}, {"assignment": "equal"}, {"beamformer": "matched-filter"},
                                     {"scheme": "digital"}, {"scheme": "analog-fdma"}])
def test_solver_figures_are_the_evaluators(options):
    inst = _energy_case()
    result = solve(inst, method="ota", samples=4, iterations=15, **options)
    assert result.status == "feasible", result.message
    report = evaluate(inst, result.plan)
    assert result.stats["allreduce_mse"] == pytest.approx(report.errors["allreduce_mse"], rel=1e-9)
    assert report.errors["allreduce_mse"] > 0
    if result.stats.get("sdr_bound") is not None:
        assert result.stats["sdr_bound"] <= report.errors["allreduce_mse"] * (1 + 1e-9)
    again = type(result.plan).from_json(result.plan.to_json())
    assert evaluate(inst, again).errors == report.errors


def test_latency_objective_meets_the_mse_target():
    inst = _energy_case()
    loose = solve_ota(inst, samples=4, iterations=15, assignment="equal")
    target = 3 * loose.report.errors["allreduce_mse"]
    result = solve_ota(inst, objective="latency", mse_target=target, samples=4, iterations=20)
    # Equal shares meet the target, so the solver must too, and be no slower than them.
    assert result.status == "feasible", result.message
    assert result.report.errors["allreduce_mse"] <= target
    assert result.objective <= loose.objective * (1 + 1e-12)
    exact = solve_ota(inst, objective="latency", mse_target=loose.report.errors["allreduce_mse"], samples=4,
                      iterations=20)
    assert exact.status == "feasible", exact.message  # a target met exactly (same channels, same design) is met
    with pytest.raises(InputError, match="positive `mse_target`"):
        solve_ota(inst, objective="latency")


def test_an_unmet_mse_target_is_no_success():
    inst = _energy_case()
    loose = solve_ota(inst, samples=4, iterations=15, assignment="equal")
    target = loose.report.errors["allreduce_mse"] / 1e6  # far below what any design reaches here
    result = solve(inst, method="ota", objective="latency", mse_target=target, samples=4, iterations=15)
    assert result.status == "infeasible" and not result.success
    assert result.report.errors["allreduce_mse"] > target and "misses the target" in result.message
    assert result.report.feasible  # memory is fine: the MSE target alone makes it infeasible


def test_ssca_is_never_worse_than_the_equal_split_it_starts_from():
    inst = _energy_case()
    equal = solve_ota(inst, samples=4, iterations=15, assignment="equal")
    for seed in range(3):
        ssca = solve_ota(inst, samples=4, iterations=15, seed=seed)
        start = solve_ota(inst, samples=4, iterations=15, seed=seed, assignment="equal")
        assert ssca.report.errors["allreduce_mse"] <= start.report.errors["allreduce_mse"] * (1 + 1e-12)
    assert equal.report.errors["allreduce_mse"] > 0


def test_ota_plan_without_wireless_section_is_a_plan_error():
    inst = _energy_case()
    plan = solve_ota(inst, assignment="equal", samples=2).plan
    bare = _instance(4, wireless=False)
    with pytest.raises(PlanError, match=r"`wireless` section in the instance.*add one"):
        evaluate(bare, plan)
    with pytest.raises(PlanError, match=r"transceiver design .* `extras.ota`"):
        evaluate(inst, plan.replace(extras={}))
    result = solve(bare, method="ota")
    assert result.status == "error" and "`wireless` section" in result.message


def test_energy_and_memory_infeasibility_name_the_fix():
    n = 2
    starved = _instance(n, _wireless(n, energy_per_token="1 nJ", compute_energy="5 pJ"))
    result = solve_ota(starved)
    assert result.status == "infeasible" and "energy_per_token" in result.message and result.plan is None


def test_the_verdict_enforces_error_targets_on_the_evaluators_mse():
    """`placement.solve`'s verdict (check_result) judges a target against the MSE the evaluator
    recomputes from the plan's design, not a figure the plan carries."""
    from placement.result import Result, check_result

    inst = _instance(3)
    plan = solve(inst, method="ota", samples=4, iterations=15).plan
    mse = evaluate(inst, plan).errors["allreduce_mse"]
    forged = plan.replace(extras={**plan.extras, "errors": {"allreduce_mse": 0.0}})  # a plan cannot inject figures
    assert evaluate(inst, forged).errors["allreduce_mse"] == mse
    missed = check_result(inst, Result("feasible", "ok", forged, None, targets={"allreduce_mse": mse / 2}), 0.0)
    assert missed.status == "infeasible" and "misses the target" in missed.message and not missed.success
    met = check_result(inst, Result("feasible", "ok", plan, None, targets={"allreduce_mse": mse * 2}), 0.0)
    assert (met.status, met.success) == ("feasible", True)
