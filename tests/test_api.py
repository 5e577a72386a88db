"""The notebook API: ``probe_model`` on any network gives the analyses' numbers (checked against
closed forms on a linear layer), and ``load_dynamics`` / ``load_metrics`` read a run's tables."""

import csv
import math
import re
import sys

import pytest
import torch
from torch import nn
from train_helpers import REPO, train_here

import attnconv_pl
from attnconv_pl import probes
from attnconv_pl.analyses.training_records import COLUMNS as METRICS_COLUMNS
from attnconv_pl.errors import ConfigError
from attnconv_pl.io.epoch_table import write_epochs
from attnconv_pl.models import create_model

EXACT = {"snapshot_dtype": "float32", "topology": False, "project_dim": 64}
"""Probe settings that store points unrounded and unprojected (widths here are at most 64)."""


@pytest.fixture
def linear_net():
    """Flatten (B, 1, 4, 4) to 16, then a seeded linear map to 8: the output is x W^T + b."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8))


@pytest.fixture
def inputs():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(40, 1, 4, 4, generator=generator), torch.randint(0, 8, (40,), generator=generator)


def numbers(rows):
    return {(row.layer, row.metric): row.value for row in rows}


def test_probe_model_gives_the_closed_form_numbers_of_a_linear_layer(linear_net, inputs):
    images, labels = inputs
    rows = attnconv_pl.probe_model(linear_net, images, labels, layers=["1"], settings={"dynamics": EXACT})
    assert {row.analysis for row in rows} == {"dynamics"} and {row.layer for row in rows} == {"1"}
    values = numbers(rows)
    with torch.no_grad():
        outputs = linear_net(images).double()
    centred = outputs - outputs.mean(dim=0)
    assert values["1", "variance"] == pytest.approx(centred.pow(2).sum(dim=1).mean().item(), rel=1e-5)
    eigenvalues = torch.linalg.eigvalsh(centred.T @ centred)
    ratio = (eigenvalues.sum() ** 2 / (eigenvalues ** 2).sum()).item()
    assert values["1", "participation_ratio"] == pytest.approx(ratio, rel=1e-4)
    assert values["1", "id_twonn"] == pytest.approx(probes.intrinsic_dimensions(outputs.float(), ("twonn",))["twonn"],
                                                    rel=1e-5)
    assert values["1", "lipschitz_max"] <= torch.linalg.matrix_norm(linear_net[1].weight, ord=2).item() + 1e-5


def test_probe_model_draws_the_probe_set_as_training_does(linear_net, inputs):
    """probe_size 10 of 40 inputs drawn by the seed: the numbers of exactly those inputs."""
    from attnconv_pl.capture.probe_set import select_probe_indices

    images, labels = inputs
    settings = {"dynamics": {**EXACT, "probe_size": 10, "seed": 3, "id_methods": ["twonn"]}}
    values = numbers(attnconv_pl.probe_model(linear_net, images, labels, layers=["1"], settings=settings))
    with torch.no_grad():
        chosen = linear_net(images[select_probe_indices(40, 10, seed=3)]).double()
    variance = (chosen - chosen.mean(dim=0)).pow(2).sum(dim=1).mean().item()
    assert values["1", "variance"] == pytest.approx(variance, rel=1e-5)


def test_probe_model_takes_a_registered_models_probe_layers_and_restores_its_mode():
    model = create_model("conv_net", num_classes=10, in_chans=1, img_size=16, dim=16).train()
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.randn(30, 1, 16, 16, generator=generator), torch.randint(0, 10, (30,), generator=generator)
    rows = attnconv_pl.probe_model(model, images, labels, settings={"dynamics": {"topology": False}})
    assert [layer for layer in dict.fromkeys(row.layer for row in rows)] == model.probe_layers
    assert model.training


@pytest.mark.parametrize(("call", "message"), [
    (dict(), r"Sequential declares no probe points \(probe_layers or feature_info\); name the layers to probe"),
    (dict(layers=["1"], analyses=["training_records"]), "reads a run's files, not a network"),
    (dict(layers=["1"], analyses=["dynamic"]), "unknown analysis 'dynamic'"),
    (dict(layers=["1"], settings={"dynamics": {"probe_sise": 5}}), "dynamics has no setting.*probe_sise"),
    (dict(layers=["1"], settings={"dynamics": {"probe_size": 0}}), "probe_size must be >= 1"),
    (dict(layers=["9"]), "no layer matches '9'"),
    (dict(layers=["1"], analyses=["stiffness"]), "analysis stiffness: .*residual"),
])
def test_probe_model_refuses_bad_requests_with_what_to_do(linear_net, inputs, call, message):
    with pytest.raises(ConfigError, match=message):
        attnconv_pl.probe_model(linear_net, *inputs, **call)


def test_probe_model_needs_one_label_per_input(linear_net, inputs):
    with pytest.raises(ConfigError, match="inputs has 40 items but labels 39"):
        attnconv_pl.probe_model(linear_net, inputs[0], inputs[1][:39], layers=["1"])


@pytest.mark.slow
def test_load_dynamics_and_load_metrics_read_a_runs_tables(tmp_path):
    run = train_here(tmp_path, "short", "--trainer.max_epochs", "1", "--dynamics.probe_size", "60",
                     "--trainer.logger", "false", "--dynamics.every_n_epochs", "1")
    dynamics = attnconv_pl.load_dynamics(run)
    with open(run / "dynamics.csv", newline="") as handle:
        written = list(csv.DictReader(handle))
    assert list(dynamics.columns) == ["epoch", "layer", "metric", "value"] and len(dynamics) == len(written)
    assert sorted(set(dynamics["epoch"])) == [0, 1] and "" in set(dynamics["layer"])  # cost rows: empty layer
    for row, expected in zip(dynamics.itertuples(), written):
        assert (row.epoch, row.layer, row.metric) == (int(expected["epoch"]), expected["layer"], expected["metric"])
        assert row.value == pytest.approx(float(expected["value"]), nan_ok=True)
    metrics = attnconv_pl.load_metrics(run / "metrics.csv")
    assert list(metrics["epoch"]) == [1] and 0 <= metrics["val_acc"][0] <= 1 and math.isfinite(metrics["train_loss"][0])


def test_load_dynamics_names_what_is_missing(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="dynamics.csv does not exist; give a run directory"):
        attnconv_pl.load_dynamics(tmp_path)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"needs pandas: pip install \"attnconv-pl\[pandas\]\""):
        attnconv_pl.load_metrics(tmp_path)


TINY_VIT = dict(img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2, num_classes=3, in_chans=1)
"""A one-block timm ViT on 8x8 images (5 tokens of width 16)."""


def tiny_vit():
    import timm

    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, **TINY_VIT)


def readme_example() -> str:
    """The first Python block of the README's "Python API (notebooks)" section."""
    section = (REPO / "README.md").read_text().split("## Python API (notebooks)\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL)[1]


def test_the_readmes_notebook_example_runs_as_written(tmp_path, monkeypatch):
    """On a timm ViT, whose ``blocks.*`` also selects the attention dropout that fused attention
    never calls: left out with one warning naming it, every other selected module probed."""
    run = tmp_path / "runs" / "default" / "RUN"
    run.mkdir(parents=True)
    write_epochs(run / "dynamics.csv", [(0, "blocks.0", "variance", 1.5), (0, "", "probe_seconds", 0.25)])
    write_epochs(run / "metrics.csv", [(1, 2.0, 0.3, 1.9, 0.4, 0.9, 3.0)], columns=METRICS_COLUMNS)
    monkeypatch.chdir(tmp_path)
    generator = torch.Generator().manual_seed(0)
    model = tiny_vit()
    namespace = {"model": model, "images": torch.randn(24, 1, 8, 8, generator=generator),
                 "labels": torch.randint(0, 3, (24,), generator=generator)}
    with pytest.warns(UserWarning) as warned:
        exec(readme_example(), namespace)
    selected = [name for name, _ in model.named_modules()
                if name.startswith("blocks.") and name != "blocks.0.attn.attn_drop"]
    (message,) = [str(warning.message) for warning in warned if "probe_model" in str(warning.message)]
    assert message == (f"probe_model: 1 of the {len(selected) + 1} layers that ['blocks.*'] selects never run in a "
                       "forward pass and are left out: blocks.0.attn.attn_drop")
    table = namespace["table"]
    assert list(table.columns) == ["analysis", "layer", "metric", "value"]
    assert list(dict.fromkeys(table.layer)) == selected
    assert list(namespace["dynamics"].itertuples(index=False)) == [(0, "blocks.0", "variance", 1.5),
                                                                  (0, "", "probe_seconds", 0.25)]
    assert list(namespace["metrics"]["val_acc"]) == [0.4]


def test_without_layers_a_timm_model_is_probed_at_the_points_train_py_probes():
    """Its feature_info (block outputs) then its classifier, as create_model("timm:NAME") finds them."""
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.randn(24, 1, 8, 8, generator=generator), torch.randint(0, 3, (24,), generator=generator)
    options = {key: value for key, value in TINY_VIT.items() if key not in ("num_classes", "in_chans", "img_size")}
    expected = create_model("timm:vit_tiny_patch16_224", num_classes=3, in_chans=1, img_size=8, **options).probe_layers
    rows = attnconv_pl.probe_model(tiny_vit(), images, labels, settings={"dynamics": {"topology": False}})
    assert list(dict.fromkeys(row.layer for row in rows if row.layer)) == expected == ["blocks.0", "head"]


class SharedActivation(nn.Module):
    """``act`` runs twice per forward pass, ``drop`` never."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.act, self.drop = nn.Linear(16, 8), nn.Linear(8, 4), nn.ReLU(), nn.Dropout()

    def forward(self, x):
        return self.act(self.fc2(self.act(self.fc1(x.flatten(1)))))


@pytest.mark.parametrize("layers, message", [
    (["act"], r"layer\(s\) act \(2 times\) run more than once per forward pass \(shared modules\)"),
    (["drop"], r"none of the layers \['drop'\] selects runs in a forward pass \(drop\)"),
])
def test_layers_that_do_not_run_once_are_refused(layers, message, inputs):
    with pytest.raises(ConfigError, match=message):
        attnconv_pl.probe_model(SharedActivation(), *inputs, layers=layers)
