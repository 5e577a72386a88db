"""The verdict rule and the mean ± sd cells of docs/results.md (docs/results_tables.py)."""

import importlib.util
import math
import sys

import numpy as np
import pytest

from train_helpers import REPO

spec = importlib.util.spec_from_file_location("results_tables", REPO / "docs" / "results_tables.py")
results_tables = importlib.util.module_from_spec(spec)
sys.modules["results_tables"] = results_tables  # dataclasses look their module up there
spec.loader.exec_module(results_tables)


@pytest.mark.parametrize("differences, claimed_sign, expected", [
    ([-3.0, -2.0, -4.0], -1, "agree"),         # all below, mean 3 > 2 sd (2)
    ([-3.0, -2.0, -4.0], +1, "disagree"),
    ([-1.0, -0.1, -5.0], -1, "inconclusive"),  # all below but mean 2.03 < 2 sd (5.2)
    ([-3.0, 0.5, -4.0], -1, "inconclusive"),   # one seed the other way
    ([-3.0, math.nan, -4.0], -1, "inconclusive"),
])
def test_verdict_follows_the_paired_seed_rule(differences, claimed_sign, expected):
    assert results_tables.verdict(differences, claimed_sign) == expected


def test_spread_is_mean_and_sample_sd():
    values = [1.0, 2.0, 4.0]
    mean, sd = np.mean(values), np.std(values, ddof=1)
    assert results_tables.spread(values) == f"{mean:.1f} ± {sd:.1f}"
    assert results_tables.spread([0.5, math.nan, 0.7]).startswith("n/a (")
