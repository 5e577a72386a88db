"""Dynamics settings a run cannot use are refused before anything trains or probes: through
``train.py`` (in-process, stopped at parsing) and the notebook API."""

import sys

import pytest
import torch
from torch import nn

import attnconv_pl
import train
from attnconv_pl.cli import RUN_ID_ENV
from attnconv_pl.errors import ConfigError

UNKNOWN = "id_methods: unknown estimator(s) 'twonm'; the estimators are twonn, mle, corrint, danco"


def test_train_refuses_an_unknown_intrinsic_dimension_estimator_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train.py"])
    monkeypatch.delenv(RUN_ID_ENV, raising=False)
    with pytest.raises(SystemExit) as stopped:
        train.main(["--runs_dir", str(tmp_path), "--trainer.logger", "false",
                    "--dynamics.id_methods", "[twonn, twonm]"])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and error.startswith(f"error: {UNKNOWN}") and error.count("\n") == 1
    assert not list(tmp_path.rglob("metrics.csv"))  # stopped before training


def test_probe_model_refuses_an_unknown_estimator_before_probing():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ConfigError, match=UNKNOWN.replace("(", r"\(").replace(")", r"\)")):
        attnconv_pl.probe_model(net, torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), layers=["1"],
                                settings={"dynamics": {"id_methods": ["twonm"]}})


@pytest.mark.parametrize("methods", [("twonn",), ("TwoNN", "mle"), ("lpca",), ()])
def test_known_estimators_are_accepted_in_any_case(methods):
    from attnconv_pl.analyses.dynamics import DynamicsSettings

    assert DynamicsSettings(id_methods=methods).id_methods == methods
