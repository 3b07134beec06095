"""Measurement (`placement.measure`, the `measure` extra): profiling, real blocks, calibration,
the multi-process run, preset files and the CLI's bad-input paths.

Real timings are noisy (CI machines are shared), so the real-run checks compare with
the error band docs/fidelity.md reports, never with a tight tolerance; the exact checks
are on synthetic measurements the evaluator itself produced.
"""

from __future__ import annotations

import builtins
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from placement.cost.model import ModelSpec, load_model  # noqa: E402
from placement.errors import InputError, SolverNotInstalledError  # noqa: E402
from placement.evaluate import evaluate  # noqa: E402
from placement.instance import instance_from_dict  # noqa: E402
from placement.measure import blocks  # noqa: E402
from placement.measure.calibrate import Observation, calibrate, predict  # noqa: E402
from placement.measure.distributed import run_plan  # noqa: E402
from placement.measure.profile import preset_fields, profile_device, read_preset, write_preset  # noqa: E402
from placement.measure.timing import measure_model  # noqa: E402
from placement.measure.validate import ERROR_BAND, distributed_cases  # noqa: E402
from placement.solvers.reference import single_plan  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_run import error_line, run_main  # noqa: E402


def tiny(name: str, layers: int, hidden: int, heads: int, kv_heads: int, vocab: int = 4096) -> ModelSpec:
    return ModelSpec(name=name, layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads, head_dim=hidden // heads,
                     ffn_hidden=4 * hidden, gated_ffn=True, vocab=vocab, tied_embeddings=False,
                     weight_bits=32, kv_bits=32, activation_bits=32)


TINY = [tiny("tiny-a", 2, 256, 4, 2), tiny("tiny-b", 4, 512, 8, 4, 8192), tiny("tiny-c", 3, 384, 6, 3, 6144)]


@pytest.fixture(scope="module")
def machine():
    """One quick profile of this machine at one thread (with loopback), shared by the tests."""
    return profile_device(quick=True, threads=1)


@pytest.fixture(scope="module")
def calibrated(machine, tmp_path_factory):
    """Presets profiled and calibrated on two tiny models, in a preset file; the third model held out."""
    observations = []
    for spec in TINY[:2]:
        result = measure_model(spec, contexts=(64, 256), prompts=(64,), repeats=15, prefill_repeats=5, threads=1)
        observations += [Observation(spec, "decode", S, t) for S, t in result["decode"].items()]
        observations += [Observation(spec, "ttft", P, t) for P, t in result["ttft"].items()]
    base = preset_fields(machine)
    fit = calibrate(base, observations)
    path = tmp_path_factory.mktemp("presets") / "device.yaml"
    write_preset(path, "profiled", base)
    write_preset(path, "calibrated", fit.fields(base))
    return path, fit


# ----------------------------------------------------------------------------- profiling
def test_profile_figures_are_positive(machine):
    assert machine["threads"] == 1
    for key in ("read_bytes_per_s", "disk_read_bytes_per_s", "loopback_latency_s", "loopback_bytes_per_s", "memory_bytes"):
        assert machine[key] > 0, key
    for figures in (machine["matmul_flops_per_s"], machine["matvec_bytes_per_s"]):
        assert set(figures) == set(blocks.PRECISIONS)
        assert all(v > 0 for v in figures.values())


def test_matrix_vector_time_is_at_least_bytes_over_the_preset_bandwidth(machine):
    instance = instance_from_dict({"model": "gpt2", "devices": [{"name": "me", **{
        k: v for k, v in preset_fields(machine).items() if k not in ("description", "source", "notes")}}],
        "workload": {"prompt_tokens": 8, "generate_tokens": 1}}, check_capacity=False)
    bandwidth = instance.devices[0].memory_bandwidth_bytes_per_s
    nbytes = 4096 * 8192 * 4
    for rate in machine["matvec_bytes_per_s"].values():
        assert nbytes / rate >= nbytes / bandwidth * (1 - 1e-3)  # the preset's bandwidth rounds to 4 digits
    assert instance.devices[0].peak_flops_per_s == pytest.approx(machine["matmul_flops_per_s"]["fp32"], rel=1e-3)


def test_profile_preset_loads_in_an_instance(machine, tmp_path):
    write_preset(tmp_path / "me.yaml", "me", preset_fields(machine))
    data = {"model": "gpt2", "devices": [{"name": "a", "preset": "me.yaml"}, {"name": "b", "preset": "me.yaml#me"}],
            "mesh": {"bandwidth": "1 Gbit/s", "latency": "1 ms"}, "workload": {"prompt_tokens": 16, "generate_tokens": 4}}
    instance = instance_from_dict(data, base=tmp_path)
    a, b = instance.devices
    assert (a.peak_flops_per_s, a.memory_bandwidth_bytes_per_s) == (b.peak_flops_per_s, b.memory_bandwidth_bytes_per_s)
    assert a.peak_flops_per_s == pytest.approx(machine["matmul_flops_per_s"]["fp32"], rel=1e-3)
    assert evaluate(instance, single_plan(instance, 0)).feasible


def test_write_preset_never_overwrites_unless_asked(tmp_path):
    path = tmp_path / "p.yaml"
    write_preset(path, "one", {"memory": "1 GiB", "peak_flops": "1 GFLOPS", "memory_bandwidth": "1 GB/s"})
    with pytest.raises(InputError, match="already has a preset 'one'.*--overwrite"):
        write_preset(path, "one", {"memory": "2 GiB", "peak_flops": "1 GFLOPS", "memory_bandwidth": "1 GB/s"})
    write_preset(path, "two", {"memory": "3 GiB", "peak_flops": "1 GFLOPS", "memory_bandwidth": "1 GB/s"})
    assert read_preset(path)["one"]["memory"] == "1 GiB"
    write_preset(path, "one", {"memory": "2 GiB", "peak_flops": "1 GFLOPS", "memory_bandwidth": "1 GB/s"}, overwrite=True)
    assert {k: v["memory"] for k, v in read_preset(path).items()} == {"one": "2 GiB", "two": "3 GiB"}
    (tmp_path / "bad.yaml").write_text("one: [unclosed\n")
    with pytest.raises(InputError, match="does not parse"):
        write_preset(tmp_path / "bad.yaml", "x", {})


# ----------------------------------------------------------------------------- calibration
def test_calibration_recovers_known_factors():
    """Measurements generated by the evaluator itself at known factors are fitted back."""
    base = {"memory": "16 GiB", "peak_flops": "100 GFLOPS", "memory_bandwidth": "25 GB/s"}
    truth = {**base, "compute_efficiency": 0.35, "memory_efficiency": 0.7, "block_overhead": "45 us"}
    shape = [Observation(spec, kind, n, 1.0) for spec in (load_model("gpt2"), TINY[1])
             for kind, n in (("decode", 128), ("decode", 1024), ("ttft", 256))]
    observations = [Observation(o.model, o.kind, o.tokens, float(t)) for o, t in zip(shape, predict(truth, shape))]
    fit = calibrate(base, observations)
    assert fit.compute_efficiency == pytest.approx(0.35, rel=1e-4)
    assert fit.memory_efficiency == pytest.approx(0.7, rel=1e-4)
    assert fit.block_overhead_s == pytest.approx(45e-6, rel=1e-4)
    assert np.abs(fit.residuals).max() < 1e-6 < np.abs(fit.residuals_before).max()
    assert predict(fit.fields(base), observations) == pytest.approx([o.seconds for o in observations], rel=1e-5)


def test_calibration_needs_observations():
    with pytest.raises(InputError, match="at least 3"):
        calibrate({"memory": "1 GiB", "peak_flops": "1 GFLOPS", "memory_bandwidth": "1 GB/s"}, [])


# ----------------------------------------------------------------------------- real execution
def test_blocks_match_the_model_and_kv_memory():
    spec = TINY[0]
    m = blocks.build_model(spec, max_context=256)
    weights = sum(w.numel() for w in m.groups.values()) + sum(w.numel() for w in m.projection.values())
    weights += sum(m.ffn_in[l].numel() + m.ffn_out[l].numel() for l in m.ffn_in)
    assert weights == spec.layers * spec.layer_params
    cache = sum(t.numel() * t.element_size() for t in (*m.k_cache.values(), *m.v_cache.values()))
    assert cache == spec.kv_bytes_per_token(1, 32) * 256
    with torch.inference_mode():
        first = blocks.prefill(m, torch.zeros(1, 16, dtype=torch.long))
        assert first.shape == (1,) and 0 <= int(first) < spec.vocab


def test_calibrated_preset_predicts_a_held_out_model():
    """Fitted on two models' (synthetic, evaluator-made) timings at known factors, the preset predicts
    a third model's timings exactly: the deterministic half of the real-run band test below."""
    base = {"memory": "16 GiB", "peak_flops": "100 GFLOPS", "memory_bandwidth": "25 GB/s"}
    truth = {**base, "compute_efficiency": 0.5, "memory_efficiency": 0.6, "block_overhead": "30 us"}

    def synthetic(specs):
        shape = [Observation(spec, kind, n, 1.0) for spec in specs for kind, n in (("decode", 64), ("decode", 256), ("ttft", 64))]
        return [Observation(o.model, o.kind, o.tokens, float(t)) for o, t in zip(shape, predict(truth, shape))]

    fit = calibrate(base, synthetic(TINY[:2]))
    held_out = synthetic(TINY[2:])
    assert predict(fit.fields(base), held_out) == pytest.approx([o.seconds for o in held_out], rel=1e-5)


def test_distributed_run_reports_every_token(calibrated):
    path, _ = calibrated
    instance, plan = distributed_cases(TINY[1], "pipeline-2", "5 ms", "100 Mbit/s", f"{path.name}#calibrated",
                                       base=path.parent, prompt_tokens=64, tokens=8)
    result = run_plan(instance, plan, warmup=2)
    assert result["processes"] == 2 and len(result["per_token_s"]) == 8
    assert result["predicted_s"] == pytest.approx(evaluate(instance, plan).mean_token_s)


# Wall-clock bands: a loaded machine fails them (issue 13), so they run only with `-m slow`.
@pytest.mark.slow
def test_tiny_real_run_is_within_the_reported_band(calibrated):
    path, fit = calibrated
    held_out = TINY[2]
    # Best of two runs of medians: other work on the machine only ever slows a run down, and these
    # millisecond-scale models feel it most (a busy second core moved one point by 10 %).
    runs = [measure_model(held_out, contexts=(64, 256), prompts=(64,), repeats=15, prefill_repeats=5, threads=1)
            for _ in range(2)]
    observations = [Observation(held_out, "decode", S, min(r["decode"][S] for r in runs)) for S in runs[0]["decode"]]
    observations += [Observation(held_out, "ttft", P, min(r["ttft"][P] for r in runs)) for P in runs[0]["ttft"]]
    predicted = predict(read_preset(path)["calibrated"], observations)
    errors = predicted / np.array([o.seconds for o in observations]) - 1
    assert np.abs(errors).max() <= ERROR_BAND, (errors, fit.summary())


@pytest.mark.slow
def test_distributed_run_agrees_with_the_evaluator(calibrated):
    path, _ = calibrated
    instance, plan = distributed_cases(TINY[1], "pipeline-2", "5 ms", "100 Mbit/s", f"{path.name}#calibrated",
                                       base=path.parent, prompt_tokens=64, tokens=8)
    result = run_plan(instance, plan, warmup=2)
    assert abs(result["error"]) <= ERROR_BAND, result


def test_model_too_large_and_unknown_precision():
    with pytest.raises(InputError, match="needs .* available"):
        blocks.build_model(load_model("llama-2-70b"))
    with pytest.raises(InputError, match="unknown precision 'fp8'"):
        blocks.build_model(TINY[0], precision="fp8")


def test_without_torch_the_message_names_the_extra(monkeypatch):
    from placement.measure._torch import torch_module

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(SolverNotInstalledError, match=r'pip install "placement\[measure\]"'):
        torch_module()


# ----------------------------------------------------------------------------- CLI
def test_cli_profile_bad_input_exits_2(tmp_path):
    assert "unknown precision 'fp8'" in error_line(run_main("profile", "--precision", "fp8", cwd=tmp_path))
    write_preset(tmp_path / "mine.yaml", "me", {"memory": "1 GiB", "peak_flops": "1 GFLOPS", "memory_bandwidth": "1 GB/s"})
    line = error_line(run_main("profile", "--out", "mine.yaml", "--name", "me", cwd=tmp_path))
    assert "already has a preset 'me'" in line and "--overwrite" in line
    (tmp_path / "broken.yaml").write_text("me: {memory: [\n")
    assert "does not parse" in error_line(run_main("profile", "--out", "broken.yaml", cwd=tmp_path))
    assert "`threads`" in error_line(run_main("profile", "--threads", "0", "--out", "new.yaml", cwd=tmp_path))
    assert not (tmp_path / "new.yaml").exists()
    assert yaml.safe_load((tmp_path / "mine.yaml").read_text())["me"]["memory"] == "1 GiB"
