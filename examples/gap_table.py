"""A gap table over your own folder of instances: every method against the MILP's optimum.

Writes two variants of a small cluster (Llama 3.2 1B on three devices, the Wi-Fi at
two speeds) as instance files into a folder, then runs the gap table over that folder,
exactly as `placement reproduce gap-table --suite FOLDER` would.

    python examples/gap_table.py --out results/examples/gap-table
"""

from __future__ import annotations

import argparse
from pathlib import Path

import placement
from placement.experiments.gap_table import reproduce_gap_table

METHODS = ["milp", "myopic+", "pipeline-dp", "greedy", "single"]


def variant(bandwidth: str) -> placement.Instance:
    """Three devices on a shared medium at `bandwidth`; no device holds the whole model with its reservation."""
    return placement.Instance.build(
        name=f"wifi-{bandwidth.split()[0]}mbit",
        model="llama-3.2-1b",
        devices=[placement.device("raspberry-pi-5", "pi", reserved="6.5 GiB"),
                 placement.device("jetson-orin-nano", "jetson", reserved="6 GiB"),
                 placement.device("raspberry-pi-4", "pi4", reserved="2.5 GiB")],
        mesh={"bandwidth": bandwidth, "latency": "3 ms"}, network="shared",
        workload={"prompt_tokens": 32, "generate_tokens": 8})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/examples/gap-table"))
    out = parser.parse_args().out
    folder = out / "instances"
    folder.mkdir(parents=True, exist_ok=True)
    for bandwidth in ("50 Mbit/s", "800 Mbit/s"):
        instance = variant(bandwidth)
        instance.save(folder / f"{instance.name}.yaml")
    result = reproduce_gap_table(str(folder), methods=METHODS, out_dir=out, n_jobs=1)
    print(Path(result["paths"]["markdown"]).read_text())
    print("written:", ", ".join(str(p) for p in result["paths"].values()))


if __name__ == "__main__":
    main()
