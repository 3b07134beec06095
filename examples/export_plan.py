"""A plan exported to the runtimes people use: llama.cpp RPC, exo, prima.cpp and vLLM.

Solves Llama 3.1 8B on the shipped four-device Wi-Fi cluster with the layer-based
dynamic program (`pipeline-dp`), then writes, for every runtime, the commands to run on
each device (and exo's partition file). A head-level plan, which these runtimes cannot
express, is refused with the reason.

    python examples/export_plan.py --out results/examples/export
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import placement
from placement.errors import PlanError
from placement.export import TARGETS, export_plan

HOSTS = {"orin-nx": "192.168.1.10", "orin-nano": "192.168.1.11", "phone": "192.168.1.12", "pi5": "192.168.1.13"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/examples/export"))
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    instance = placement.load_instance("edge/llama-3.1-8b-4dev")
    result = placement.solve(instance, method="pipeline-dp")
    print(f"pipeline-dp: {result.status}, {result.report.mean_token_s * 1e3:.1f} ms per token")
    for target in TARGETS:
        exported = export_plan(instance, result.plan, target, hosts=HOSTS)
        script = out / f"{target}.sh"
        script.write_text(exported.to_text())
        for name, contents in exported.files.items():
            (out / name).write_text(json.dumps(contents, indent=1) + "\n")
        print(f"\n{script}:\n{exported.to_text()}")
    head_level = placement.solve(instance, method="myopic")
    try:
        export_plan(instance, head_level.plan, "llama.cpp", interval=0)
    except PlanError as exc:
        print(f"myopic's plan: {exc}")


if __name__ == "__main__":
    main()
