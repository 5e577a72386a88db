"""Layer 0 of the depth profiles: the probe inputs' own numbers, and the metrics.csv rows a
probed run carries for its training curves."""

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from attnconv_pl import probes
from attnconv_pl.analyses.dynamics import DynamicsSettings
from attnconv_pl.analyses.training_records import COLUMNS
from attnconv_pl.errors import ProbeInputError
from attnconv_pl.io.epoch_table import write_epochs
from attnconv_pl.offline.assemble import input_metrics, metrics_rows


def fake_prober(images=None, run_dir=None, settings=None):
    """What the assembly reads of a RunProber: its dynamics probe set, settings and run directory."""
    probe_set = None if images is None else SimpleNamespace(images=images)
    return SimpleNamespace(probe_set=probe_set, probe_settings=settings or DynamicsSettings(),
                           run=SimpleNamespace(run_dir=run_dir))


def test_the_inputs_numbers_are_the_probes_of_the_flattened_images():
    images = torch.randn(60, 1, 6, 6, generator=torch.Generator().manual_seed(0)) * 2.0
    settings = DynamicsSettings(id_methods=("twonn", "mle"), mle_k=10)
    found = input_metrics(fake_prober(images, settings=settings))
    flat = images.reshape(60, 36)
    assert found["variance"] == pytest.approx(probes.total_variance(flat))
    assert found["variance"] == pytest.approx(float(((flat - flat.mean(0)) ** 2).sum(1).mean()))  # by hand
    assert found["participation_ratio"] == pytest.approx(probes.participation_ratio(flat))
    estimates = probes.intrinsic_dimensions(flat, ("twonn", "mle"), k=10)
    assert (found["id_twonn"], found["id_mle"]) == pytest.approx((estimates["twonn"], estimates["mle"]))
    assert input_metrics(fake_prober(None)) == {}  # no dynamics probe set: no layer 0


def test_metrics_rows_are_read_when_present_and_a_foreign_file_is_refused(tmp_path):
    assert metrics_rows(fake_prober(run_dir=None)) == [] and metrics_rows(fake_prober(run_dir=tmp_path)) == []
    rows = [(1, 2.0, 0.2, 2.1, 0.25, 0.6, 3.0), (2, 1.5, 0.4, math.nan, math.nan, math.nan, 2.5)]
    write_epochs(tmp_path / "metrics.csv", rows, columns=COLUMNS)
    read = metrics_rows(fake_prober(run_dir=tmp_path))
    assert [row["epoch"] for row in read] == [1, 2] and read[0]["val_acc"] == 0.25 and math.isnan(read[1]["val_acc"])
    (tmp_path / "metrics.csv").write_text("step,loss\n1,2.0\n")
    with pytest.raises(ProbeInputError, match="metrics.csv is written by train.py"):
        metrics_rows(fake_prober(run_dir=Path(tmp_path)))
