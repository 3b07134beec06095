"""A home cluster built in Python, solved several ways, compared, and reported.

Llama 3.1 8B (16 GB of weights, more than any one device holds) on a laptop, a Jetson Orin Nano, a phone and a Raspberry Pi 5 that share one
Wi-Fi channel through an access point. The plan of every method is judged by the same
evaluator; the fastest feasible one gets an HTML report.

    python examples/home_cluster.py --out results/examples/home-cluster
"""

from __future__ import annotations

import argparse
from pathlib import Path

import placement
from placement.report import device_blocks, write_report

METHODS = ("single", "pipeline", "pipeline-dp", "myopic+", "tp")


def home_cluster() -> placement.Instance:
    """The cluster: four devices on a shared Wi-Fi medium, reservations for their operating systems."""
    devices = [
        placement.device("apple-m2-laptop", "laptop", reserved="5 GiB"),
        placement.device("jetson-orin-nano", "jetson", reserved="1.5 GiB"),
        placement.device("phone-snapdragon-8-gen-3", "phone", reserved="6 GiB"),
        placement.device("raspberry-pi-5", "pi", reserved="1 GiB"),
    ]
    links = [placement.link(name, "wifi-ap", bandwidth=rate, latency="2 ms")
             for name, rate in (("laptop", "400 Mbit/s"), ("jetson", "200 Mbit/s"), ("phone", "300 Mbit/s"),
                                ("pi", "100 Mbit/s"))]
    return placement.Instance.build(
        name="home-cluster", model="llama-3.1-8b", devices=devices, switches=["wifi-ap"], links=links,
        network="shared", workload=placement.Workload(prompt_tokens=256, generate_tokens=128, interval_tokens=64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/examples/home-cluster"))
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    instance = home_cluster()
    instance.save(out / "home-cluster.yaml")  # the same cluster as a file, for `placement solve`
    results = {method: placement.solve(instance, method=method) for method in METHODS}
    print(f"{'method':<12} {'status':<11} {'mean per token':>15} {'total':>10}")
    for method, result in results.items():
        report = result.report
        figures = (f"{report.mean_token_s * 1e3:12.1f} ms {report.total_s:9.2f} s" if report is not None
                   else f"{'-':>15} {'-':>10}")
        print(f"{method:<12} {result.status:<11} {figures}")
    best_method, best = min(((m, r) for m, r in results.items() if r.success), key=lambda mr: mr[1].report.total_s)
    print(f"\nfastest feasible: {best_method}")
    for device, blocks in device_blocks(instance, best.plan).items():
        print(f"  {device:<8} {blocks}")
    page = write_report(out / "report.html", instance, best.plan, report=best.report, result=best)
    print(f"report: {page}")


if __name__ == "__main__":
    main()
