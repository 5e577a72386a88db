"""Frozen token features: computed once, read back while nothing changes, rebuilt when something does."""

import pytest
import torch

from attnconv_pl.data import DigitsDataModule
from attnconv_pl.heads.frozen_features import FrozenFeaturesDataModule, digit_rows, read_cache, write_cache
from attnconv_pl.module import ClassifierModule

VIT = {"depth": 2, "embed_dim": 16, "num_heads": 2, "patch_size": 4}
"""A tiny ViT on 8 px digits: 2 x 2 patches plus the class token = 5 tokens of width 16."""


def forbid_recomputing(monkeypatch):
    def fail(self, split):
        raise AssertionError(f"the {split} features were recomputed")

    monkeypatch.setattr(FrozenFeaturesDataModule, "_compute", fail)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    """A train.py-style checkpoint of the tiny ViT with its data module's hyper-parameters."""
    torch.manual_seed(0)
    module = ClassifierModule(arch="vit_mini", arch_kwargs=VIT, num_classes=10, in_chans=1, image_size=8)
    data = DigitsDataModule(image_size=8, in_chans=1)
    path = tmp_path_factory.mktemp("run") / "backbone.ckpt"
    torch.save({"state_dict": module.state_dict(),
                "hyper_parameters": {**module.hparams, "_class_path": "attnconv_pl.module.ClassifierModule"},
                "datamodule_hyper_parameters": {**data.hparams, "_class_path": "attnconv_pl.data.DigitsDataModule"}},
               path)
    return path, module.model.eval(), data


def test_digit_rows_are_cached_and_reused(tmp_path, monkeypatch):
    features = FrozenFeaturesDataModule(cache_dir=str(tmp_path))
    assert (features.num_classes, features.in_chans, features.image_size) == (10, 8, 8)
    tokens, labels = features.split_tensors("val")
    digits = DigitsDataModule(image_size=8)
    digits.setup("fit")
    rows, all_labels = digit_rows()
    indices = digits.val_dataset.indices  # the same seeded split as DigitsDataModule
    assert torch.equal(tokens, rows[indices]) and torch.equal(labels, all_labels[indices])
    path = features.cache_path("val")
    written = path.stat().st_mtime_ns
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind

    forbid_recomputing(monkeypatch)
    again = FrozenFeaturesDataModule(cache_dir=str(tmp_path))
    assert torch.equal(again.split_tensors("val")[0], tokens)
    assert path.stat().st_mtime_ns == written


@pytest.mark.parametrize("change", [{"val_fraction": 0.2}, {"seed": 1}, {"pool_tokens": 4}])
def test_changed_data_settings_rebuild(change, tmp_path):
    reference = FrozenFeaturesDataModule(cache_dir=str(tmp_path))
    reference.split_tensors("val")
    changed = FrozenFeaturesDataModule(cache_dir=str(tmp_path), **change)
    assert changed.cache_path("val") != reference.cache_path("val")
    tokens, _ = changed.split_tensors("val")
    assert changed.cache_path("val").is_file()
    assert tokens.shape[1:] == (changed.image_size, changed.in_chans)


def test_a_backbone_layer_gives_its_tokens(backbone, tmp_path):
    path, model, data = backbone
    features = FrozenFeaturesDataModule(backbone=str(path), cache_dir=str(tmp_path), device="cpu")
    assert (features.num_classes, features.in_chans, features.image_size) == (10, 16, 5)
    tokens, labels = features.split_tensors("val")
    images, expected_labels = zip(*data.eval_dataset("val"))
    captured = []
    handle = model.blocks[1].register_forward_hook(lambda module, args, output: captured.append(output))
    with torch.no_grad():
        model(torch.stack(images))
    handle.remove()
    assert torch.allclose(tokens, captured[0], atol=1e-5)  # the last block's output by default
    assert labels.tolist() == list(expected_labels)


def test_a_changed_layer_or_checkpoint_rebuilds(backbone, tmp_path, monkeypatch):
    path, model, _ = backbone
    last = FrozenFeaturesDataModule(backbone=str(path), cache_dir=str(tmp_path), device="cpu")
    first = FrozenFeaturesDataModule(backbone=str(path), layer="blocks.0", cache_dir=str(tmp_path), device="cpu")
    assert first.cache_path("val") != last.cache_path("val")
    assert not torch.equal(first.split_tensors("val")[0], last.split_tensors("val")[0])
    written = last.cache_path("val").stat().st_mtime_ns

    retrained = path.with_name("retrained.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"] = {name: value + 0.01 for name, value in checkpoint["state_dict"].items()}
    torch.save(checkpoint, retrained)
    assert FrozenFeaturesDataModule(backbone=str(retrained), cache_dir=str(tmp_path)).fingerprint != last.fingerprint

    forbid_recomputing(monkeypatch)
    again = FrozenFeaturesDataModule(backbone=str(path), cache_dir=str(tmp_path), device="cpu")
    again.split_tensors("val")
    assert last.cache_path("val").stat().st_mtime_ns == written


def test_pooling_projects_the_width_and_averages_tokens(backbone, tmp_path):
    path, _, _ = backbone
    pooled = FrozenFeaturesDataModule(backbone=str(path), pool_dim=4, pool_tokens=2, cache_dir=str(tmp_path))
    assert (pooled.in_chans, pooled.image_size) == (4, 2)
    assert pooled.split_tensors("val")[0].shape[1:] == (2, 4)
    averaged = FrozenFeaturesDataModule(backbone=str(path), pool_dim=4, pool="average", cache_dir=str(tmp_path))
    assert averaged.fingerprint != pooled.fingerprint
    assert averaged.split_tensors("val")[0].shape[1:] == (5, 4)


def test_bad_settings_are_refused(backbone, tmp_path):
    path, _, _ = backbone
    with pytest.raises(ValueError, match="no layer matches 'no_such_layer'; layers are: patch_embed"):
        FrozenFeaturesDataModule(backbone=str(path), layer="no_such_layer", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"layer 'blocks\.\*' selects \d+ layers .*; name exactly one"):
        FrozenFeaturesDataModule(backbone=str(path), layer="blocks.*", cache_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FrozenFeaturesDataModule(backbone=str(tmp_path / "missing.ckpt"))
    with pytest.raises(ValueError, match="with backbone 'none'"):
        FrozenFeaturesDataModule(backbone_data={"seed": 1})


def test_normalized_tokens_have_unit_rms_norm_on_the_train_split(backbone, tmp_path):
    path, _, _ = backbone
    features = FrozenFeaturesDataModule(backbone=str(path), normalize=True, cache_dir=str(tmp_path))
    features.setup("fit")
    train = features.train_dataset.tensors[0]
    assert torch.allclose(train.mean(dim=(0, 1)), torch.zeros(16), atol=1e-5)
    assert train.pow(2).sum(dim=-1).mean() == pytest.approx(1.0, rel=1e-3)
    raw = FrozenFeaturesDataModule(backbone=str(path), cache_dir=str(tmp_path))
    assert raw.cache_path("train") == features.cache_path("train")  # the cache holds the features as extracted


def test_a_cache_file_of_the_right_fingerprint_but_wrong_tensors_is_rebuilt(tmp_path):
    features = FrozenFeaturesDataModule(cache_dir=str(tmp_path))
    tokens, labels = features.split_tensors("val")
    path = features.cache_path("val")
    write_cache(path, tokens, labels[:-1], features.fingerprint, {})  # one label short
    with pytest.warns(UserWarning, match=rf"{path} holds labels of torch.int64 \({len(labels) - 1},\), not int64 "
                                         rf"\({len(labels)},\); rebuilding the file"):
        rebuilt = features.split_tensors("val")
    assert torch.equal(rebuilt[0], tokens) and torch.equal(rebuilt[1], labels)
    assert read_cache(path, features.fingerprint) is not None
