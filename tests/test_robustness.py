"""Issue 13: every bad input is one clear line, `--json` is one JSON document, no result is lost.

One test per class of bad input the issue lists (the message must name the field or the
cause and the fix), the JSON purity of every ``--json`` command in a subprocess (HiGHS
writes its banner to file descriptor 1 from C++, which only a real process shows),
atomic writes under a failing disk, option validation shared by every method, CBC's
honest bound, and a bounded hypothesis fuzz over instance and plan mutations.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import placement
from placement.errors import InputError, InputWarning, PlacementError, PlanError
from placement.files import atomic_write, check_output_path, parse_yaml, write_text_atomic
from placement.instance import instance_from_dict, instances_dir, load_instance
from placement.options import check_common, method_options, parse_option_pairs
from placement.plan import Plan
from placement.solvers.reference import pipeline_plan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_run import error_line, run_main  # noqa: E402

INSTANCE = "edge/llama-3.2-1b-2dev"
BASE = yaml.safe_load((instances_dir() / f"{INSTANCE}.yaml").read_text())
INLINE = yaml.safe_load((Path(placement.cost.model.models_dir()) / "llama-3.2-1b.yaml").read_text())


def edited(edit) -> dict:
    data = copy.deepcopy(BASE)
    edit(data)
    return data


def with_model(**changes) -> dict:
    return edited(lambda d: d.update(model={**INLINE, **changes}))


def links(**changes):
    def edit(d):
        for link in d["links"]:
            link.update(changes)
    return edit


# ============================================================================ 2: no traceback on bad files
def test_non_utf8_and_utf16_files(tmp_path):
    text = yaml.safe_dump(BASE)
    (tmp_path / "u16.yaml").write_bytes(text.encode("utf-16"))
    (tmp_path / "latin.yaml").write_bytes(("description: caf\xe9\n" + text).encode("latin-1"))
    with pytest.raises(InputError, match="is UTF-16; save it as UTF-8"):
        load_instance(tmp_path / "u16.yaml")
    with pytest.raises(InputError, match=r"is not UTF-8 text \(byte 16: b'\\xe9'\); save it as UTF-8"):
        load_instance(tmp_path / "latin.yaml")


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "locked.yaml"
    path.write_text(yaml.safe_dump(BASE))

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(InputError, match="cannot be read \\(Permission denied\\); check the path and its permissions"):
        load_instance(path)


def test_deep_nesting_in_yaml_and_json(tmp_path):
    (tmp_path / "deep.yaml").write_text("model: " + "[" * 5000 + "]" * 5000)
    (tmp_path / "deep.json").write_text('{"model": ' + "[" * 5000 + "]" * 5000 + "}")
    for name in ("deep.yaml", "deep.json"):
        with pytest.raises(InputError, match="nests deeper than 64 levels; flatten it"):
            load_instance(tmp_path / name)


@pytest.mark.parametrize("value", [None, 5, ""])
def test_hf_config_that_is_not_a_path(value):
    with pytest.raises(InputError, match=r"`model.hf_config`: expected the path of a config.json, got"):
        instance_from_dict(edited(lambda d: d.update(model={"hf_config": value})))


@pytest.mark.parametrize("value, shown", [("16", "'16'"), (None, "None"), ([16], r"\[16\]")])
def test_inline_weight_bits_of_the_wrong_type(value, shown):
    with pytest.raises(InputError, match=rf"`model.weight_bits`: expected a number, got {shown}"):
        instance_from_dict(with_model(weight_bits=value))


def test_token_counts_beyond_the_limit():
    with pytest.raises(InputError, match=r"context tokens .* is 9,223,372,036,854,775,936; the limit is 10,000,000"):
        instance_from_dict(edited(lambda d: d["workload"].update(generate_tokens=2**63)))


def test_plan_device_entries_that_are_lists_or_integers():
    inst = load_instance(INSTANCE)
    data = pipeline_plan(inst).to_dict()
    bad_devices = {**data, "devices": [["pi5"], "orin-nano"]}
    with pytest.raises(PlanError, match=r"`devices` must be a list of distinct device names, got \[\['pi5'\]"):
        Plan.from_dict(bad_devices)
    bad_embed = copy.deepcopy(data)
    bad_embed["intervals"][0]["embed"] = 3
    with pytest.raises(PlanError, match="interval 0 embed: device 3 is not in the plan's `devices`"):
        Plan.from_dict(bad_embed)
    bad_group = copy.deepcopy(data)
    bad_group["intervals"][0]["attention"][0] = [["pi5"]] * inst.model.kv_heads
    with pytest.raises(PlanError, match=r"interval 0 layer 0: device \['pi5'\] is not in the plan's `devices`"):
        Plan.from_dict(bad_group)


def test_cli_sweep_and_bench_options():
    assert "`--jobs` must be a whole number of worker processes, at least 1, got 0" in error_line(
        run_main("reproduce", "gap-table", "--jobs", "0"))
    assert "`--dask` must be 'local' or a scheduler address such as tcp://" in error_line(
        run_main("reproduce", "gap-table", "--dask", "nonsense"))
    assert "`--repeats` must be at least 1, got 0" in error_line(run_main("bench", "--repeats", "0"))


def test_unreachable_scheduler_is_one_line_and_exit_1(monkeypatch):
    """An environment failure: the CLI prints the cause in one line and exits 1 (checked through `main`)."""
    from placement.experiments import sweep

    def unreachable(*args, **kwargs):
        raise OSError("Timed out trying to connect to tcp://10.9.9.9:8786 after 10 s")

    pytest.importorskip("dask.distributed")
    monkeypatch.setattr("dask.distributed.Client", unreachable)
    job = sweep.Job(INSTANCE, "pipeline")
    with pytest.raises(OSError, match=r"cannot connect to the Dask scheduler 'tcp://10.9.9.9:8786' \(OSError; waited at most 10 s\)"):
        sweep.run_sweep([job], "unused", dask="tcp://10.9.9.9:8786")


# ============================================================================ 3: no wrong answers
def test_figures_that_overflow_are_rejected_naming_the_field():
    with pytest.raises(InputError, match=r"`devices\[0\] \(pi5\).peak_flops` / compute_efficiency: one generation would "
                                         r"take inf s"):
        instance_from_dict(edited(lambda d: d["devices"][0].update(peak_flops="1e-300 FLOP/s")))
    with pytest.raises(InputError, match=r"`links\[0\].latency`: one generation would take inf s .* check the value"):
        instance_from_dict(edited(links(latency="1e308 s")))


@pytest.mark.parametrize("edit, limit", [
    (lambda d: d["workload"].update(generate_tokens=9_000_000, interval=1), r"intervals .* is 9,000,000; the limit is 10,000"),
    (lambda d: d.update(model={**INLINE, "layers": 10**6}), "layers is 1,000,000; the limit is 1,024"),
    (lambda d: d.update(model={**INLINE, "heads": 10**9, "kv_heads": 10**9}), "heads is 1,000,000,000; the limit is 8,192"),
])
def test_sizes_that_cannot_run_name_the_limit(edit, limit):
    with pytest.raises(InputError, match=limit):
        instance_from_dict(edited(edit))


def test_alias_bomb_is_refused_without_expanding_it(tmp_path):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    assert (tmp_path / "bomb.yaml").stat().st_size < 1000  # 9**9 = 387 million strings once expanded
    with pytest.raises(InputError, match="expands to more than 200,000 values") as info:
        load_instance(tmp_path / "bomb.yaml")
    assert len(str(info.value)) < 300


def test_anchors_and_merges_within_the_bound_still_work():
    data = parse_yaml("pi: &pi {preset: raspberry-pi-5}\ndevices: [{<<: *pi, name: a}, {<<: *pi, name: b}]\n")
    assert data["devices"] == [{"preset": "raspberry-pi-5", "name": "a"}, {"preset": "raspberry-pi-5", "name": "b"}]


def test_a_huge_value_is_never_echoed_whole():
    with pytest.raises(InputError) as info:
        instance_from_dict(edited(lambda d: d["devices"][0].update(memory=["8 GiB"] * 100_000)))
    assert len(str(info.value)) < 500


def test_a_report_with_a_non_finite_figure_is_not_feasible():
    inst = load_instance(INSTANCE)
    report = placement.evaluate(inst, pipeline_plan(inst))
    assert report.feasible
    broken = type(report)(**{**report.__dict__, "decode_s": np.append(report.decode_s[:-1], np.nan)})
    assert not broken.feasible


# ============================================================================ 4: unit and type traps
@pytest.mark.parametrize("text, fix", [("200 mbps", "200 Mbit/s"), ("200 mbit/s", "200 Mbit/s"), ("5 mB/s", "5 MB/s")])
def test_lowercase_m_rates_are_refused_with_the_fix(text, fix):
    with pytest.raises(InputError, match=rf"`links\[0\].bandwidth`: '{text}' would be milli.* write '{fix}'"):
        instance_from_dict(edited(links(bandwidth=text)))


def test_memory_in_bits_is_refused():
    with pytest.raises(InputError, match=r"`devices\[0\] \(pi5\).memory`: '8 Gb' is in bits; write memory in bytes"):
        instance_from_dict(edited(lambda d: d["devices"][0].update(memory="8 Gb")))


def test_implausible_magnitudes_warn_one_line_each():
    with pytest.warns(InputWarning) as caught:
        instance_from_dict(edited(links(bandwidth="500 bit/s", latency=30)), check_capacity=False)
    messages = [str(w.message) for w in caught]
    assert messages == [
        "`links[0].bandwidth` is 500 bit/s, under 1 kbit/s; is the unit right ('100 Mbit/s', '1 GB/s')?",
        "`links[0].latency` is 30 s, over 10 s; is the unit right ('2 ms')? (a bare number is seconds)",
    ]
    with pytest.warns(InputWarning, match=r"`devices\[0\].memory` is 524288 bytes, under 1 MiB for a model of 2,357 MiB"):
        instance_from_dict(edited(lambda d: d["devices"][0].update(memory="512 KiB", reserved_memory="0 B")), check_capacity=False)


def test_shipped_instances_give_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        for name in placement.instance_names():
            load_instance(name, check_capacity=False)


def test_quoted_booleans_and_numbers_are_errors():
    with pytest.raises(InputError, match=r"`model.gated_ffn`: expected true or false \(unquoted\), got 'false'"):
        instance_from_dict(with_model(gated_ffn="false"))
    with pytest.raises(InputError, match=r"`workload.precision.weights`: Input should be a valid number .*'8'"):
        instance_from_dict(edited(lambda d: d["workload"].update(precision={"weights": "8"})))


def test_duplicate_yaml_key_is_an_error(tmp_path):
    (tmp_path / "dup.yaml").write_text(yaml.safe_dump(BASE, sort_keys=False) + "model: gpt2\n")
    with pytest.raises(InputError, match=r"dup.yaml: line \d+: key 'model' appears twice in one mapping; keep one"):
        load_instance(tmp_path / "dup.yaml")


@pytest.mark.parametrize("change, match", [
    ({"precison": {}}, r"unknown field\(s\) 'precison'; known fields are format"),
    ({"format": "placement-plan/2"}, r"`format` is 'placement-plan/2'; this version reads 'placement-plan/1'"),
    ({"groups_per_layer": 0}, "`groups_per_layer` must be a positive whole number, got 0"),
    ({"groups_per_layer": 10**9}, "`groups_per_layer` is 1,000,000,000; the limit is 1,024"),
    ({"collective": "allgather"}, "`collective` must be one of ring, star, gather, ota, got 'allgather'"),
])
def test_plan_files_are_strict(change, match):
    data = pipeline_plan(load_instance(INSTANCE)).to_dict()
    with pytest.raises(PlanError, match=match):
        Plan.from_dict({**data, **change})


def test_a_plan_cannot_inject_error_figures():
    inst = load_instance(INSTANCE)
    plan = pipeline_plan(inst)
    for injected in ({"allreduce_mse": -5.0}, [1, 2], "none"):
        report = placement.evaluate(inst, plan.replace(extras={"errors": injected}))
        assert report.errors == {}


# ============================================================================ 1: --json is one document
def _json_document(proc) -> object:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)  # the whole of stdout, nothing before or after


@pytest.mark.parametrize("method", ["milp", "myopic-milp", "static", "tp", "pipeline"])
def test_solve_json_is_one_document_for_highs_methods(method):
    data = _json_document(run_main("solve", INSTANCE, "--method", method, "--json"))
    assert data["method"] == method and data["status"] in ("optimal", "feasible")


@pytest.mark.parametrize("args", [("evaluate", INSTANCE), ("models",), ("instances",), ("devices",), ("methods",),
                                  ("methods", "milp"), ("schema",)])
def test_other_commands_print_one_json_document(args):
    data = _json_document(run_main(*args, "--json") if args[0] != "schema" else run_main(*args))
    assert data


def test_reproduce_gap_table_json_on_a_folder_of_user_instances(tmp_path):
    suite = tmp_path / "mine"
    suite.mkdir()
    (suite / "two.yaml").write_text((instances_dir() / f"{INSTANCE}.yaml").read_text())
    proc = run_main("reproduce", "gap-table", "--suite", str(suite), "--methods", "milp,myopic,myopic+", "--json",
                    "--time-limit", "30", "--out", str(tmp_path / "out"))
    summary = {row["method"]: row for row in _json_document(proc)}
    assert set(summary) == {"milp", "myopic", "myopic+"}
    assert summary["milp"]["mean_gap"] == 0.0  # the optimum against itself
    rows = (tmp_path / "out" / "gap-table.csv").read_text().splitlines()
    header = rows[0].split(",")
    decision = header.index("decision_median_s")
    by_method = {r.split(",")[1]: r.split(",") for r in rows[1:]}
    assert float(by_method["myopic"][decision]) > 0 and float(by_method["myopic+"][decision]) > 0
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_python_api_prints_nothing_on_stdout(capfd):
    inst = load_instance(INSTANCE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        for method in placement.METHODS:
            placement.solve(inst, method=method, time_limit=30)
    captured = capfd.readouterr()
    assert captured.out == ""


def test_non_finite_figures_become_null_in_json():
    from placement.files import json_ready

    assert json.dumps(json_ready({"a": float("nan"), "b": [np.float64("inf"), 1.5], "c": np.int64(3)}),
                      allow_nan=False) == '{"a": null, "b": [null, 1.5], "c": 3}'


# ============================================================================ 5: never lost or half-written
def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "plan.json"
    target.write_text('{"old": true}\n')
    with pytest.raises(OSError, match="No space left on device"):
        with atomic_write(target) as fh:
            fh.write("{" + '"x": 1, ' * 1000)
            raise OSError(28, "No space left on device")
    assert target.read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]


def test_plan_and_tables_use_the_atomic_writer(tmp_path, monkeypatch):
    """A failure at the final rename (a full disk) leaves the previous plan whole and no temporary file."""
    inst = load_instance(INSTANCE)
    target = tmp_path / "plan.json"
    pipeline_plan(inst).to_json(target)
    before = target.read_text()

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError):
        placement.solve(inst, method="single").plan.to_json(target)
    from placement.experiments.output import write_rows_csv

    with pytest.raises(OSError):
        write_rows_csv(tmp_path / "table.csv", [{"a": 1}])
    assert target.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]


def test_new_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_out_is_checked_before_any_work(tmp_path):
    instance_file = tmp_path / "inst.yaml"
    instance_file.write_text(yaml.safe_dump(BASE))
    with pytest.raises(InputError, match="is an input of this command; write the result elsewhere"):
        check_output_path(instance_file, inputs=(str(instance_file),))
    with pytest.raises(InputError, match="folder .*missing.* does not exist; create it first"):
        check_output_path(tmp_path / "missing" / "plan.json")
    with pytest.raises(InputError, match="is a folder; give a file name such as"):
        check_output_path(tmp_path)
    line = error_line(run_main("solve", str(instance_file), "--out", str(instance_file)))
    assert "is an input of this command" in line
    assert yaml.safe_load(instance_file.read_text()) == BASE


# ============================================================================ 7, 9: options
@pytest.mark.parametrize("options, match", [
    ({"time_limit": -1}, r"`time_limit` must be a positive, finite number of seconds, got -1"),
    ({"time_limit": 0}, r"`time_limit` must be a positive, finite number of seconds, got 0"),
    ({"time_limit": math.nan}, r"`time_limit` must be a positive, finite number of seconds, got nan"),
    ({"time_limit": "10"}, r"got '10' \(text: write it without quotes\)"),
    ({"gap": -1}, r"`gap` must be a relative gap in \[0, 1\)"),
    ({"gap": 2}, r"`gap` must be a relative gap in \[0, 1\)"),
    ({"gap": math.nan}, r"`gap` must be a relative gap in \[0, 1\)"),
    ({"threads": 0}, "`threads` must be a whole number, at least 1, got 0"),
    ({"seed": 1.5}, "`seed` must be a whole number, got 1.5"),
])
def test_common_options_are_checked_once(options, match):
    with pytest.raises(InputError, match=match):
        check_common(options)
    inst = load_instance(INSTANCE)
    for method in ("milp", "myopic-milp", "static"):
        with pytest.raises(InputError, match=match):
            placement.solve(inst, method=method, **options)


def test_a_common_option_a_method_lacks_is_a_note():
    with pytest.warns(InputWarning, match="method 'pipeline' has no `time_limit`; ignored"):
        result = placement.solve(load_instance(INSTANCE), method="pipeline", time_limit=5)
    assert result.status == "feasible"


def test_method_options_are_read_from_the_back_end():
    options = {o.name: o for o in method_options("myopic+")}
    assert options["horizon"].default == 8 and options["horizon"].kind.startswith("int")
    assert options["horizon"].meaning
    milp = {o.name: o for o in method_options("milp")}
    assert milp["solver"].kind == '{"highs", "cbc", "ortools"}'
    assert milp["time_limit"].meaning.startswith("Seconds for the whole solve")


def test_option_pairs_are_yaml_values():
    assert parse_option_pairs(["horizon=4", "collectives=[star]", "pin={embed: pi5}", "seed=-3"]) == {
        "horizon": 4, "collectives": ["star"], "pin": {"embed": "pi5"}, "seed": -3}
    with pytest.raises(InputError, match="write KEY=VALUE"):
        parse_option_pairs(["horizon"])
    with pytest.raises(InputError, match="`--option` horizon is given twice"):
        parse_option_pairs(["horizon=4", "horizon=5"])


def test_option_on_the_cli_reaches_the_back_end():
    data = _json_document(run_main("solve", INSTANCE, "--method", "milp", "-O", "pin={embed: orin-nano, lm_head: orin-nano}",
                                   "--json"))
    plan = Plan.from_dict(data["plan"]) if "plan" in data else None
    assert data["status"] in ("optimal", "feasible")
    if plan is not None:
        assert plan.devices[plan.intervals[0].embed] == "orin-nano"
    line = error_line(run_main("solve", INSTANCE, "--method", "myopic+", "-O", "horizon=abc"))
    assert "option `horizon` must be a number (default 8), got 'abc'" in line


@pytest.mark.parametrize("method, options, match", [
    ("tp", {"collectives": 5}, r"option `collectives` must be a list, got 5"),
    ("split", {"workspace_bytes": "x"}, r"option `workspace_bytes` must be a number, got 'x'"),
    ("milp", {"pin": 5}, r"option `pin` must be a mapping, got 5"),
    ("milp", {"pin": {"embed": 5}}, r"`pin` must map block names to device names"),
    ("milp", {"forbid": {"pi5": "ffn"}}, r"`forbid` must map device names to lists of blocks"),
])
def test_method_options_of_the_wrong_kind_are_named(method, options, match):
    with pytest.raises(InputError, match=match):
        placement.solve(load_instance(INSTANCE), method=method, **options)


def test_methods_command_lists_options_with_defaults():
    proc = run_main("methods", "myopic+", "--json")
    rows = {r["name"]: r for r in _json_document(proc)}
    assert rows["horizon"]["default"] == "8" and rows["max_moves"]["default"] == "10000"


def test_cbc_reports_its_own_bound_and_gap_status():
    inst = load_instance(INSTANCE)
    # bound=None: CBC's own bound alone (the configuration LP would prove this one optimal)
    loose = placement.solve(inst, method="milp", solver="cbc", gap=0.5, bound=None)
    exact = placement.solve(inst, method="milp", solver="highs")
    assert loose.status == "feasible"  # a gap tolerance stopped it: not proven optimal
    assert loose.bound is not None and loose.bound <= loose.objective
    assert loose.bound <= exact.objective * (1 + 1e-9)  # a bound is a bound on the true optimum


def test_cbc_warm_start_is_clipped_to_variable_bounds():
    from placement.solvers.backends import solve_problem
    from placement.solvers.linear import LinearProblem
    from scipy import sparse

    # min -x - y  s.t.  x + y <= 1.5, x binary, y in [0, 1]; the start exceeds x's upper bound by 2e-15
    problem = LinearProblem(np.array([-1.0, -1.0]), sparse.csr_matrix([[1.0, 1.0]]), np.array([-np.inf]), np.array([1.5]),
                            np.array([0.0, 0.0]), np.array([1.0, 1.0]), np.array([True, False]), 0.0)
    outcome = solve_problem(problem, "cbc", start=np.array([1.0000000000000018, 0.5]))
    assert outcome.status == "optimal" and outcome.objective == pytest.approx(-1.5)


# ============================================================================ fuzz
_FIELDS = [("devices", 0, "memory"), ("devices", 0, "peak_flops"), ("devices", 1, "memory_bandwidth"),
           ("links", 0, "bandwidth"), ("links", 0, "latency"), ("workload", None, "prompt_tokens"),
           ("workload", None, "generate_tokens"), ("workload", None, "interval"), ("workload", None, "batch")]
_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["8 GiB", "1e-300 FLOP/s", "1e308 s", "200 mbps", "8 Gb", "-1 GB", "'true'", "nan GB", "", "3"]),
    st.text(max_size=12), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(_FIELDS), value=_VALUES)
def test_fuzzed_instances_give_a_library_error_or_a_finite_report(field, value):
    data = copy.deepcopy(BASE)
    section, index, key = field
    (data[section][index] if index is not None else data[section])[key] = value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        try:
            inst = instance_from_dict(data, check_capacity=False)
        except PlacementError:
            return
        report = placement.evaluate(inst, pipeline_plan(inst))
    assert math.isfinite(report.total_s) and np.all(np.isfinite(report.decode_s))
    json.dumps(report.to_dict(), allow_nan=False)


_PLAN_PATHS = [("devices",), ("groups_per_layer",), ("collective",), ("root",), ("extras",), ("windows",), ("client",),
               ("intervals", 0, "embed"), ("intervals", 0, "lm_head"), ("intervals", 0, "attention", 0),
               ("intervals", 0, "projection", 1), ("intervals", 0, "ffn"), ("intervals", 0, "precision"), ("format",)]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(_PLAN_PATHS), value=st.one_of(_VALUES, st.sampled_from(["pi5", "orin-nano", {"pi5": 0.5}])))
def test_fuzzed_plans_give_a_library_error_or_a_finite_report(path, value):
    inst = load_instance(INSTANCE)
    data = pipeline_plan(inst).to_dict()
    target = data
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    try:
        report = placement.evaluate(inst, Plan.from_dict(json.loads(json.dumps(data))))
    except PlacementError:
        return
    assert math.isfinite(report.total_s)
    json.dumps(report.to_dict(), allow_nan=False)
