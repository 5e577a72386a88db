"""A run directory saved before a module moved still resumes: its ``config.yaml`` names the old
module in ``class_path``, and train.py's parser still finds the class there."""

from pathlib import Path

import pytest

from attnconv_pl.cli import MOVED_MODULES, TrainCLI
from attnconv_pl.heads.frozen_features import FrozenFeaturesDataModule

REPO = Path(__file__).resolve().parents[1]


def test_a_config_naming_the_old_frozen_features_module_still_parses(tmp_path, capsys):
    old = "attnconv_pl.data.frozen_features"
    assert MOVED_MODULES[old] == FrozenFeaturesDataModule.__module__
    config = (REPO / "configs" / "convex_heads_digits.yaml").read_text()
    assert f"{FrozenFeaturesDataModule.__module__}.FrozenFeaturesDataModule" in config
    saved = tmp_path / "config.yaml"
    saved.write_text(config.replace(FrozenFeaturesDataModule.__module__, old))
    with pytest.raises(SystemExit) as exit_info:
        TrainCLI(args=["--config", str(saved), "--runs_dir", str(tmp_path / "runs"), "--print_config"])
    assert exit_info.value.code == 0
    assert f"class_path: {old}.FrozenFeaturesDataModule" in capsys.readouterr().out
