"""The HTML report and the plan in words: figures checked against the evaluator, the page in a real browser."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

import placement
from placement.errors import InputError
from placement.plan import Placement, Plan
from placement.report import device_blocks, migrations, report_html, write_report
from placement.report.steps import step_breakdown, step_timeline
from placement.solvers.reference import pipeline_plan
from tests.cli_run import run_main

# (instance, method): layer plans, head-level plans (MILP), tensor parallel, the kafetzis2025
# profile (three-phase latency) and a shared wireless medium.
CASES = [
    ("edge/llama-3.2-1b-4dev", "pipeline"),
    ("edge/llama-3.2-1b-4dev", "tp"),
    ("paper-small/h8-3dev-low-s1-roofline", "milp"),
    ("paper-small/h8-4dev-medium-s1-kafetzis", "milp"),
    ("edge-real/llama-3.2-1b-3dev-wifi", "pipeline"),
    ("edge/llama-3.1-8b-8dev", "myopic+"),
]


@pytest.fixture(scope="module")
def solved():
    return {case: placement.solve(placement.load_instance(case[0]), method=case[1]) for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}:{c[1]}")
def test_timeline_ends_at_the_evaluators_step_latency(solved, case):
    inst = placement.load_instance(case[0])
    result = solved[case]
    for k in range(min(3, len(result.plan.intervals))):
        segments = step_timeline(inst, result.plan, k)
        end = max(s.end_s for s in segments)
        assert end == pytest.approx(result.report.decode_s[k * inst.workload.tau], rel=1e-9)
        # The critical path is unbroken: its segments cover [0, end] without a gap.
        critical = sorted((s.start_s, s.end_s) for s in segments if s.critical)
        reach = 0.0
        for start, stop in critical:
            assert start <= reach + 1e-12
            reach = max(reach, stop)
        assert reach == pytest.approx(end, rel=1e-9)


# Since issue 16 (paper-small's links read as the authors' GiB/s; myopic+'s new plans) these two
# plans have a critical path through a device that computes less than the slowest one: the
# report's compute ("decode on an ideal network") then exceeds the evaluator's critical-path
# compute (by 0.06 % and 0.0007 %). The report's definition needs its owner's decision.
_COMPUTE_SPLIT_DIFFERS = pytest.mark.xfail(strict=True, reason="report compute split != evaluator decode_compute "
                                           "(ideal-network definition); for the report's owner")
@pytest.mark.parametrize("case", [pytest.param(c, marks=_COMPUTE_SPLIT_DIFFERS)
                                  if c in (("paper-small/h8-3dev-low-s1-roofline", "milp"),
                                           ("edge/llama-3.1-8b-8dev", "myopic+")) else c for c in CASES],
                         ids=lambda c: f"{c[0]}:{c[1]}")
def test_compute_part_of_the_trace_sums_to_the_evaluators_decode_compute(solved, case):
    inst = placement.load_instance(case[0])
    report = solved[case].report
    parts = step_breakdown(inst, solved[case].plan, report.decode_s, report.migration_s)
    assert parts.compute_s.sum() == pytest.approx(report.breakdown_s["decode_compute"], rel=1e-9)
    assert parts.transfer_s.sum() == pytest.approx(report.breakdown_s["decode_transfer"], rel=1e-9, abs=1e-12)
    assert parts.migration_s.sum() == pytest.approx(report.migration_s.sum())


def _moving_plan(inst) -> Plan:
    """Interval 0: layers 0–7 on pi-a, 8–15 on pi-b; interval 1 moves groups 0–2 of layer 3 to pi-c."""
    L, K, N = inst.model.layers, inst.model.kv_heads, inst.n_devices
    first = Placement.by_layer(np.repeat([0, 1], L // 2), K, N)
    attention = first.attention.copy()
    attention[3, :3] = 2
    second = Placement(attention, first.projection, first.ffn, first.embed, first.lm_head)
    intervals = [first, second] + [second] * (inst.workload.n_intervals - 2)
    return Plan(devices=inst.cluster.names, intervals=intervals, method="hand-made")


def test_blocks_in_words_for_a_hand_made_plan():
    inst = placement.load_instance("edge/llama-3.2-1b-4dev")  # 16 layers, 8 groups, 4 devices, 8 intervals
    plan = _moving_plan(inst)
    assert device_blocks(inst, plan, 0) == {
        "pi-a": "embed; layers 0–7: all 8 groups + projection + FFN",
        "pi-b": "lm_head; layers 8–15: all 8 groups + projection + FFN",
        "pi-c": "nothing",
        "pi-d": "nothing",
    }
    later = device_blocks(inst, plan, 1)
    assert later["pi-a"] == ("embed; layers 0–2: all 8 groups + projection + FFN; layer 3: groups 3,4,5,6,7 + "
                             "projection + FFN; layers 4–7: all 8 groups + projection + FFN")
    assert later["pi-c"] == "layer 3: groups 0,1,2"


def test_migrations_name_what_moves_and_take_the_evaluators_time():
    inst = placement.load_instance("edge/llama-3.2-1b-4dev")
    plan = _moving_plan(inst)
    report = placement.evaluate(inst, plan)
    moves = migrations(inst, plan, report.migration_s)
    assert [(m["interval"], m["step"], m["moves"]) for m in moves] == [(1, 65, ["3 groups pi-a → pi-c"])]
    assert moves[0]["time_s"] == report.migration_s[1] > 0


def test_page_is_self_contained_and_has_one_group_per_interval():
    inst = placement.load_instance("edge/llama-3.2-1b-4dev")
    plan = _moving_plan(inst)
    page = report_html(inst, plan)
    # Nothing fetched: no external scripts, styles, images or fonts (the SVG namespace is a name, not a fetch).
    assert not re.search(r"<link\b|\bsrc=|@import|url\(", page)
    assert set(re.findall(r"https?://[^\"' )]+", page)) == {"http://www.w3.org/2000/svg"}
    intervals = inst.workload.n_intervals
    for figure in ("layer-map", "timeline"):
        svg_text = re.search(rf'<svg[^>]*id="{figure}".*?</svg>', page, re.S).group(0)
        assert sorted(set(re.findall(r'data-interval="(\d+)"', svg_text)), key=int) == [str(k) for k in range(intervals)]
    assert page.count('class="mem-bar') == intervals * inst.n_devices
    assert "3 groups pi-a → pi-c" in page


def test_write_report_refuses_a_missing_folder_and_leaves_nothing(tmp_path):
    inst = placement.load_instance("edge/llama-3.2-1b-2dev")
    with pytest.raises(InputError, match="does not exist; create it or write elsewhere"):
        write_report(tmp_path / "nowhere" / "plan.html", inst, pipeline_plan(inst))
    path = write_report(tmp_path / "plan.html", inst, pipeline_plan(inst))
    assert [p.name for p in tmp_path.iterdir()] == ["plan.html"] and path.stat().st_mode & 0o044


def test_cli_solve_lists_blocks_bound_and_writes_the_report(tmp_path):
    page, plan = tmp_path / "plan.html", tmp_path / "plan.json"
    proc = run_main("solve", "paper-small/h8-3dev-low-s1-roofline", "--method", "milp", "--report", str(page),
                    "--out", str(plan))
    assert proc.returncode == 0, proc.stderr
    assert "blocks per device" in proc.stdout
    assert re.search(r"bound [\d.]+ ms, gap 0\.00 %", proc.stdout)
    assert page.is_file() and "<svg" in page.read_text()
    again = tmp_path / "again.html"
    proc = run_main("report", "paper-small/h8-3dev-low-s1-roofline", str(plan), "--out", str(again))
    assert proc.returncode == 0 and again.is_file(), proc.stderr


# ----------------------------------------------------------------------------- a real browser
def _browser():
    """A headless Chromium driven by selenium, or a skip naming what is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install '.[test]')")
    binary = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip("no Chromium/chromedriver on this machine; install them with `.ci/install-browser` (README)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,2400"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: selenium's own driver download (which needs a network) never runs.
    return webdriver.Chrome(service=Service(driver), options=options)


def test_page_in_a_headless_browser(tmp_path):
    inst = placement.load_instance("edge/llama-3.2-1b-4dev")
    page = write_report(tmp_path / "plan.html", inst, _moving_plan(inst))
    browser = _browser()
    try:
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select

        browser.get(page.as_uri())
        errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
        assert errors == []
        for element in ("layer-map", "memory", "trace", "timeline", "links", "migrations", "interval", "devices"):
            assert browser.find_element(By.ID, element).is_displayed(), element
        visible = lambda k: browser.find_element(  # noqa: E731
            By.CSS_SELECTOR, f'#layer-map g[data-interval="{k}"]').value_of_css_property("display") != "none"
        assert visible(0) and not visible(1)
        Select(browser.find_element(By.ID, "interval")).select_by_value("1")
        assert visible(1) and not visible(0)
        cell = browser.find_elements(By.CSS_SELECTOR, '#layer-map g[data-interval="1"] g.cell')[3]
        ActionChains(browser).move_to_element(cell).perform()
        tip = browser.find_element(By.ID, "tip")
        assert tip.is_displayed() and tip.text == cell.get_attribute("data-tip") and tip.text.startswith("layer 3 on ")
        shot = tmp_path / "shot.png"
        browser.save_screenshot(str(shot))
        assert browser.get_log("browser") == []
    finally:
        browser.quit()
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    not_white = (pixels < 0.9).any(axis=-1).mean()
    assert 0.05 < not_white < 0.9  # drawn, and not one colour all over
    coloured = (np.ptp(pixels, axis=-1) > 0.3).mean()  # the figures' blue/orange/green, not only black text
    assert coloured > 0.01
