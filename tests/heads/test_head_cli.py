"""``train.py`` with a convex head, where a user meets it (in this process): bad settings stop
with one ``error:`` line and exit status 2 before anything is written, the certificate lands in
``metrics.csv`` and stops training once it holds, a broken feature cache is rebuilt."""

import csv
import logging
from pathlib import Path

import pytest
import torch
from train_helpers import launch_train, refused

from attnconv_pl.heads import certify, one_hot
from attnconv_pl.heads.frozen_features import FrozenFeaturesDataModule, read_cache
from attnconv_pl.heads.module import HeadModule

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "convex_heads_digits.yaml"
QUICK = ("--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary",
         "false", "--checkpoint.every_n_epochs", "1")
FAST_CONVERGENCE = ("--model.init_args.beta", "0.1", "--model.init_args.head_kwargs", "{heads: 4}",
                    "--model.init_args.lbfgs_iterations", "10")
"""A strongly regularised instance (rank(Z*) = 2 on the digit rows) whose duality gap falls below
1e-4 within 40 L-BFGS iterations, 10 per epoch."""


def head_args(tmp_path: Path, *args: str) -> tuple[str, ...]:
    """``--config configs/convex_heads_digits.yaml`` with features cached in ``tmp_path/features``."""
    return ("--config", str(CONFIG), "--data.init_args.cache_dir", str(tmp_path / "features"), *QUICK, *args)


def launch(monkeypatch, tmp_path: Path, *args: str) -> Path:
    """``python train.py`` of :func:`head_args` in this process; the run directory."""
    launch_train(monkeypatch, tmp_path / "runs", *head_args(tmp_path, *args))
    return tmp_path / "runs" / "convex_heads_digits" / "run"


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(("args", "expected"), [
    (("--model.init_args.beta", "-1"), "--model.init_args.beta must be a finite number >= 0 (the weight decay"),
    (("--model.init_args.beta", ".nan"), "--model.init_args.beta must be a finite number >= 0"),
    (("--model.init_args.beta", ".inf"), "--model.init_args.beta must be a finite number >= 0"),
    (("--model.init_args.head_kwargs", "{heads: 0}"),
     "--model.init_args.head_kwargs: linear_attention: heads must be an integer >= 1 (units per block), got 0"),
    (("--model.init_args.head_kwargs", "{heads: 2.5}"), "heads must be an integer >= 1 (units per block), got 2.5"),
    (("--model.init_args.head_kwargs", "{gates: 2}"),
     "head 'linear_attention' got unknown option(s) 'gates'; its options are: heads"),
    (("--model.init_args.head", "mlp", "--model.init_args.head_kwargs", "{hidden: 0}"),
     "mlp: hidden must be an integer >= 1 (hidden units), got 0"),
    (("--model.init_args.head", "mixer", "--model.init_args.head_kwargs", "{gates: -1}"),
     "mixer: gates must be an integer >= 1"),
    (("--model.init_args.head", "linear_atention",), "unknown head 'linear_atention'. Did you mean 'linear_attention'"),
    (("--model.init_args.lbfgs_iterations", "0"), "--model.init_args.lbfgs_iterations must be an integer >= 1"),
    (("--model.init_args.lr", "0"), "--model.init_args.lr must be a finite number > 0"),
    (("--model.init_args.gap_tol", "0"), "--model.init_args.gap_tol must be a finite number > 0"),
], ids=["negative-beta", "nan-beta", "inf-beta", "zero-heads", "fractional-heads", "unknown-option",
        "zero-hidden", "negative-gates", "unknown-head", "zero-iterations", "zero-lr", "zero-gap-tol"])
def test_bad_head_settings_stop_with_one_error_line_before_anything_is_written(args, expected, monkeypatch, capsys,
                                                                              tmp_path):
    assert expected in refused(monkeypatch, capsys, tmp_path / "runs", *head_args(tmp_path, *args))
    assert not list(tmp_path.rglob("*")), "a refused launch wrote files"


def test_the_certificate_is_in_metrics_csv_and_training_stops_once_it_holds(monkeypatch, caplog, tmp_path):
    with caplog.at_level(logging.INFO):
        run_dir = launch(monkeypatch, tmp_path, *FAST_CONVERGENCE, "--trainer.max_epochs", "8")
    rows = metrics_rows(run_dir)
    assert 1 < len(rows) < 8  # stopped early
    converged = [float(row["certificate_converged"]) for row in rows]
    assert converged == [0.0] * (len(rows) - 1) + [1.0]
    objectives = [float(row["certificate_objective"]) for row in rows]
    assert objectives == sorted(objectives, reverse=True)
    last = rows[-1]
    assert 0 <= float(last["certificate_duality_gap"]) <= 1e-4 * float(last["certificate_objective"])
    assert 1 <= float(last["certificate_rank"]) <= 4
    assert f"converged after {len(rows)} epochs" in caplog.text
    # the row holds the certificate of the weights saved after that epoch, in float64
    module = HeadModule.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", map_location="cpu")
    datamodule = FrozenFeaturesDataModule(cache_dir=str(tmp_path / "features"))
    tokens, labels = datamodule.split_tensors("train")
    result = certify(module.model.double(), tokens.double(), one_hot(labels, 10, torch.float64), 0.1)
    assert float(last["certificate_objective"]) == pytest.approx(result.objective, rel=1e-9)  # float32: 1e-7
    assert float(last["certificate_duality_gap"]) == pytest.approx(result.duality_gap, rel=1e-6, abs=1e-15)


def test_a_run_that_ends_unconverged_says_so_in_metrics_csv_and_names_the_settings_to_raise(monkeypatch, tmp_path):
    with pytest.warns(UserWarning, match=r"training ended before the head converged: its duality gap is .* > gap_tol "
                                         r"0.0001 .*raise --trainer.max_epochs \(1\) or "
                                         r"--model.init_args.lbfgs_iterations \(10 per epoch\)"):
        run_dir = launch(monkeypatch, tmp_path, *FAST_CONVERGENCE, "--trainer.max_epochs", "1")
    (row,) = metrics_rows(run_dir)
    assert float(row["certificate_converged"]) == 0.0
    assert float(row["certificate_duality_gap"]) > 1e-4 * float(row["certificate_objective"])


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_broken_feature_cache_is_rebuilt(damage, monkeypatch, tmp_path):
    datamodule = FrozenFeaturesDataModule(cache_dir=str(tmp_path / "features"))
    tokens, labels = datamodule.split_tensors("train")
    path = datamodule.cache_path("train")
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2] if damage == "truncated" else b"not a safetensors file" * 10)
    with pytest.warns(UserWarning, match=f"the cached features {path} cannot be read .*; rebuilding the file"):
        launch(monkeypatch, tmp_path, "--trainer.max_epochs", "1", "--model.init_args.lbfgs_iterations", "1")
    rebuilt = read_cache(path, datamodule.fingerprint)
    assert rebuilt is not None and torch.equal(rebuilt[0], tokens) and torch.equal(rebuilt[1], labels)


def test_a_cache_that_cannot_be_written_is_reported_in_one_line(monkeypatch, capsys, tmp_path):
    (tmp_path / "features").write_text("a file where the cache folder should be")
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        launch(monkeypatch, tmp_path, "--trainer.max_epochs", "1", "--model.init_args.lbfgs_iterations", "1")
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert line.startswith(f"error: cannot write the cached features {tmp_path / 'features'}/")
    assert line.endswith("set --data.init_args.cache_dir to a folder you can write to")
