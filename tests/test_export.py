"""Export to runtimes: each target's arguments read back through that runtime's documented rule give the plan.

The rules re-implemented here are the runtimes' own, from their sources:

- llama.cpp: the model's devices are the RPC servers in ``--rpc`` order, then the main
  host's (src/llama.cpp, "add RPC servers at the front of the list"); with ``-ngl L+1``
  layer ``il`` in ``0 … L`` (``L`` is the output layer) goes to the first device whose
  normalised cumulative ``--tensor-split`` exceeds ``il / (L+1)`` in float32
  (src/llama-model.cpp, ``std::upper_bound`` over the split points).
- exo: ``start_layer = int(start·L)``, ``end_layer = int(end·L) - 1``, the last shard ends at
  ``L - 1`` (exo/topology/partitioning_strategy.py, ``map_partitions_to_shards``).
- prima.cpp: ``-lw`` is one window per rank in rank order; the ranks form a ring through
  ``--next`` (README, "Run on Multiple Devices" and FAQ 1); windows repeat round by round.
- vLLM: ``VLLM_PP_LAYER_PARTITION`` is one count per stage, as many as
  ``--pipeline-parallel-size``, summing to the layers; stage ``i`` starts at the sum of the
  counts before it (vllm/distributed/utils.py, ``get_pp_indices``).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import placement
from placement.errors import PlanError
from placement.export import export_plan, parse_hosts
from placement.plan import Placement, Plan
from tests.cli_run import error_line, run_main

INSTANCE = "edge/llama-3.1-8b-4dev"  # 32 layers on orin-nx, orin-nano, phone, pi5


@pytest.fixture(scope="module")
def case():
    inst = placement.load_instance(INSTANCE)
    plan = placement.solve(inst, method="pipeline").plan
    owner = [plan.devices[row[0]] for row in plan.placement(0).attention]
    return inst, plan, owner


def _argument(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_llama_cpp_rpc_and_tensor_split_reproduce_the_plan(case):
    inst, plan, owner = case
    hosts = {"orin-nx": "10.0.0.2", "phone": "10.0.0.4:50060"}
    out = export_plan(inst, plan, "llama.cpp", hosts=hosts)
    main_device, server = out.commands[-1]
    assert server[0] == "llama-server"
    rpc = _argument(server, "--rpc").split(",")
    assert all(re.fullmatch(r"[^:,]+:\d+", endpoint) for endpoint in rpc)
    split = [float(x) for x in _argument(server, "--tensor-split").split(",")]
    L = inst.model.layers
    assert int(_argument(server, "-ngl")) == L + 1
    by_endpoint = {f"{hosts.get(d, d)}" if ":" in hosts.get(d, "") else f"{hosts.get(d, d)}:50052": d
                   for d in inst.cluster.names}
    devices = [by_endpoint[e] for e in rpc] + [main_device]
    assert len(split) == len(devices)
    points = np.cumsum(np.array(split, dtype=np.float32)) / np.float32(sum(split))
    layer_device = [devices[int(np.searchsorted(points, np.float32(il) / np.float32(L + 1), side="right"))]
                    for il in range(L + 1)]
    assert layer_device[:L] == owner
    assert layer_device[L] == plan.devices[plan.placement(0).lm_head]  # the output layer
    # Every RPC device runs an rpc-server on the port its endpoint names.
    for device, argv in out.commands[:-1]:
        assert argv[0] == "rpc-server" and f"{hosts.get(device, device).split(':')[0]}:{_argument(argv, '--port')}" in rpc


def test_llama_cpp_refuses_a_head_level_plan(case):
    inst, plan, owner = case
    layers = np.array([inst.cluster.index(d) for d in owner])
    head_level = Placement.by_layer(layers, inst.model.kv_heads, inst.n_devices)
    head_level.attention[3, 0] = inst.cluster.index("pi5")  # one group of layer 3 elsewhere
    with pytest.raises(PlanError, match=r"layer 3 splits its attention groups over orin-nx, pi5.*multi-process runner"):
        export_plan(inst, Plan(inst.cluster.names, [head_level]), "llama.cpp")
    milp = placement.solve(placement.load_instance("paper-small/h8-3dev-low-s1-roofline"), method="milp")
    with pytest.raises(PlanError, match=r"layer 0 splits its attention groups over d\d"):
        export_plan(placement.load_instance("paper-small/h8-3dev-low-s1-roofline"), milp.plan, "llama.cpp")


def test_exo_partitions_map_back_to_the_plans_layers(case):
    inst, plan, owner = case
    out = export_plan(inst, plan, "exo")
    L = inst.model.layers
    partitions = out.files["exo-partition.json"]["partitions"]
    assert partitions[0]["start"] == 0.0 and partitions[-1]["end"] == 1.0
    assert all(a["end"] == b["start"] for a, b in zip(partitions, partitions[1:]))
    layers = []
    for i, p in enumerate(partitions):
        start, end = int(p["start"] * L), int(p["end"] * L) - 1
        if i == len(partitions) - 1:
            end = L - 1
        layers += [p["node_id"]] * (end - start + 1)
    assert layers == owner
    shards = out.files["exo-partition.json"]["shards"]
    assert [(s["start_layer"], s["end_layer"]) for s in shards] == [(int(p["start"] * L), int(p["end"] * L) - 1)
                                                                   for p in partitions[:-1]] + [(shards[-1]["start_layer"], L - 1)]
    assert {d for d, argv in out.commands} == set(owner) and all(argv[0] == "exo" for _, argv in out.commands)


def _prima_layers(out, L: int) -> list[str]:
    ranks = {int(_argument(argv, "--rank")): (device, argv) for device, argv in out.commands}
    world = len(ranks)
    assert all(int(_argument(argv, "--world")) == world for _, argv in ranks.values())
    # The ring: following --next from rank 0 visits every rank once and returns to rank 0.
    hosts = {device: _argument(argv, "--master") if r == 0 else None for r, (device, argv) in ranks.items()}
    assert len({_argument(argv, "--master") for _, argv in ranks.values()}) == 1
    nexts = [_argument(ranks[r][1], "--next") for r in range(world)]
    assert nexts[-1] == hosts[ranks[0][0]]
    windows = [int(w) for w in _argument(ranks[0][1], "-lw").split(",")]
    assert len(windows) == world
    cycle = np.repeat(np.arange(world), windows)
    return [ranks[int(r)][0] for r in np.resize(cycle, L)]


def test_prima_cpp_layer_windows_reproduce_the_plan(case):
    inst, plan, owner = case
    out = export_plan(inst, plan, "prima.cpp")
    assert _prima_layers(out, inst.model.layers) == owner


def test_prima_cpp_runs_a_plan_of_two_rounds_as_a_piped_ring():
    inst = placement.load_instance("edge/llama-3.2-1b-4dev")  # 16 layers
    layer_devices = np.tile(np.repeat([0, 1, 2, 3], 2), 2)  # windows of 2, two rounds
    plan = Plan(inst.cluster.names, [Placement.by_layer(layer_devices, inst.model.kv_heads, inst.n_devices)])
    out = export_plan(inst, plan, "prima.cpp")
    assert _argument(out.commands[-1][1], "-lw") == "2,2,2,2"
    assert _prima_layers(out, 16) == [inst.cluster.names[d] for d in layer_devices]
    uneven = np.array([0, 0, 1, 1, 2, 2, 3, 3, 0, 1, 1, 1, 2, 2, 3, 3])
    with pytest.raises(PlanError, match="would put layer 9 on pi-a"):
        export_plan(inst, Plan(inst.cluster.names, [Placement.by_layer(uneven, 8, 4)]), "prima.cpp")
    with pytest.raises(PlanError, match="pi-a has layers 0–1 and 8–9"):
        export_plan(inst, plan, "vllm")


def test_vllm_pipeline_partition_reproduces_the_plan(case):
    inst, plan, owner = case
    out = export_plan(inst, plan, "vllm")
    serve = out.commands[-1][1]
    pp = int(_argument(serve, "--pipeline-parallel-size"))
    counts = [int(x) for x in out.environment["VLLM_PP_LAYER_PARTITION"].split(",")]
    assert len(counts) == pp and sum(counts) == inst.model.layers
    starts = np.concatenate([[0], np.cumsum(counts)])
    stage_devices = [device for device, argv in out.commands if argv[:2] == ["ray", "start"]]
    assert len(stage_devices) == pp and out.commands[0][1][2] == "--head"
    assert [stage_devices[int(np.searchsorted(starts, l, side="right")) - 1] for l in range(inst.model.layers)] == owner


def test_a_plan_that_changes_needs_an_interval(case):
    inst, plan, owner = case
    layers = np.array([inst.cluster.index(d) for d in owner])
    later = Placement.by_layer(np.where(layers == 0, 1, layers), inst.model.kv_heads, inst.n_devices)  # orin-nx's layers to orin-nano
    changing = Plan(inst.cluster.names, [plan.placement(0)] + [later] * (inst.workload.n_intervals - 1))
    with pytest.raises(PlanError, match="re-places blocks at interval 1.*--interval K"):
        export_plan(inst, changing, "vllm")
    assert export_plan(inst, changing, "vllm", interval=1).environment["VLLM_PP_LAYER_PARTITION"] == "19,7,6"


def test_cli_export_json_and_errors(tmp_path, case):
    inst, plan, _ = case
    path = tmp_path / "plan.json"
    plan.to_json(path)
    proc = run_main("export", INSTANCE, str(path), "--to", "vllm", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["environment"] == {"VLLM_PP_LAYER_PARTITION": "13,6,7,6"}
    assert "unknown export target 'ollama'" in error_line(run_main("export", INSTANCE, str(path), "--to", "ollama"))
    assert "not DEVICE=HOST" in error_line(run_main("export", INSTANCE, str(path), "--to", "exo", "--hosts", "pi5"))
    assert parse_hosts("pi5=10.0.0.9", inst.cluster.names)["pi5"] == "10.0.0.9"
