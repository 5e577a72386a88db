"""Layer 0 of the depth profiles: the probe inputs' own numbers."""

from types import SimpleNamespace

import pytest
import torch

from attnconv_pl import probes
from attnconv_pl.analyses.dynamics import DynamicsSettings
from attnconv_pl.offline.assemble import input_metrics


def fake_prober(images=None, settings=None):
    """What the assembly reads of a RunProber for the inputs' numbers: its dynamics probe set and settings."""
    probe_set = None if images is None else SimpleNamespace(images=images)
    return SimpleNamespace(probe_set=probe_set, probe_settings=settings or DynamicsSettings())


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

