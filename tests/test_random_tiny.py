"""The random tiny instance generator: its draws stay in the space it documents, and repeat by seed."""

from __future__ import annotations

import numpy as np
import pytest

from placement.experiments.suites.common import first_fit_decreasing, memory_summary
from placement.experiments.suites.random_tiny import REPORT_SEEDS, TUNING_SEEDS, random_tiny_dict, random_tiny_instance


def test_tuning_and_report_seeds_are_disjoint():
    assert not set(TUNING_SEEDS) & set(REPORT_SEEDS) and len(REPORT_SEEDS) >= 200


@pytest.mark.parametrize("seed", range(0, 40))
def test_draws_stay_in_the_space(seed):
    inst = random_tiny_instance(seed)
    model = inst.model
    assert 1 <= model.layers <= 2 and 2 <= model.heads <= 8 and model.heads % model.kv_heads == 0
    assert 2 <= inst.n_devices <= 5 and 1 <= inst.workload.n_intervals <= 3
    flops = np.array([d.peak_flops_per_s for d in inst.devices])
    assert ((2e9 * 0.999 <= flops) & (flops <= 40e9 * 1.001)).all()
    bandwidth = np.array([d.memory_bandwidth_bytes_per_s for d in inst.devices])
    assert ((1e9 * 0.999 <= bandwidth) & (bandwidth <= 10e9 * 1.001)).all()
    summary = memory_summary(inst)
    share = np.array(summary["devices"]) / summary["total"]
    assert np.allclose(share, 2.0, rtol=1e-3) or ((0.35 - 1e-3 <= share) & (share <= 0.90 + 1e-3)).all()
    assert first_fit_decreasing(summary["blocks"], summary["devices"])


def test_same_seed_same_instance_other_seed_other_instance():
    assert random_tiny_dict(11) == random_tiny_dict(11)
    assert random_tiny_dict(11) != random_tiny_dict(12)
