"""DigitsDataModule on scikit-learn's real bundled digits (1797 images, no download)."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from attnconv_pl.data import DATAMODULES, SPLITS, DigitsDataModule, create_datamodule

N_DIGITS = 1797


@pytest.fixture(scope="module")
def sklearn_digits():
    bunch = load_digits()
    return bunch.images / 16.0, bunch.target


@pytest.fixture(scope="module")
def dm():
    module = DigitsDataModule(image_size=16, seed=0)
    module.setup()
    return module


def stacked(dataset):
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(images), torch.tensor(labels)


def test_shape_attributes_are_known_before_setup():
    module = DigitsDataModule(image_size=24, in_chans=3)
    assert (module.num_classes, module.in_chans, module.image_size) == (10, 3, 24)
    assert module.hparams["image_size"] == 24 and module.hparams["in_chans"] == 3


def test_splits_before_setup_say_which_setup_builds_them():
    module = DigitsDataModule()
    assert not hasattr(module, "train_dataset")
    with pytest.raises(AttributeError, match="setup\\(\\) with stage 'fit' or 'validate'"):
        module.val_dataset  # noqa: B018 (reading the attribute is what raises)


def test_items_are_float_images_with_int_labels_in_range(dm):
    for split in SPLITS:
        image, label = getattr(dm, f"{split}_dataset")[0]
        assert image.shape == (1, 16, 16) and image.dtype == torch.float32
        assert isinstance(label, int)
    labels = torch.cat([stacked(dm.eval_dataset(split))[1] for split in SPLITS])
    assert labels.min() == 0 and labels.max() == 9


def test_split_sizes_follow_the_fractions_and_partition_all_digits(dm):
    train, val, test = (getattr(dm, f"{split}_dataset").indices for split in SPLITS)
    assert (len(val), len(test)) == (round(0.15 * N_DIGITS), round(0.15 * N_DIGITS))
    assert len(train) == N_DIGITS - len(val) - len(test)
    assert sorted(train + val + test) == list(range(N_DIGITS))


def test_same_seed_same_split_other_seed_other_split(dm):
    again = DigitsDataModule(image_size=16, seed=0)
    again.setup("fit")
    other = DigitsDataModule(image_size=16, seed=1)
    other.setup("fit")
    assert again.val_dataset.indices == dm.val_dataset.indices
    assert torch.equal(stacked(again.val_dataset)[0], stacked(dm.val_dataset)[0])
    assert other.val_dataset.indices != dm.val_dataset.indices


def test_train_split_is_normalised_to_zero_mean_unit_std(dm):
    images, _ = stacked(dm.eval_dataset("train"))
    assert images.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert images.std().item() == pytest.approx(1.0, abs=1e-3)


def test_images_at_native_size_are_sklearn_digits_scaled_to_unit_range(sklearn_digits):
    raw_images, raw_labels = sklearn_digits
    module = DigitsDataModule(image_size=8, seed=5)
    for split in SPLITS:
        dataset = module.eval_dataset(split)
        images, labels = stacked(dataset)
        unnormalised = images[:, 0] * module.std[0] + module.mean[0]
        np.testing.assert_allclose(unnormalised.numpy(), raw_images[dataset.indices], atol=1e-5)
        np.testing.assert_array_equal(labels.numpy(), raw_labels[dataset.indices])


def test_resized_images_stay_in_unit_range_and_rgb_repeats_the_grey_channel():
    module = DigitsDataModule(image_size=32, in_chans=3)
    images, _ = stacked(module.eval_dataset("test"))
    assert images.shape[1:] == (3, 32, 32)
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])
    unnormalised = images * module.std[0] + module.mean[0]
    assert unnormalised.min() >= -1e-5 and unnormalised.max() <= 1 + 1e-5


def test_eval_dataset_matches_val_and_test_items_exactly(dm):
    for split in ("val", "test"):
        fresh = DigitsDataModule(image_size=16, seed=0).eval_dataset(split)
        assert torch.equal(stacked(fresh)[0], stacked(getattr(dm, f"{split}_dataset"))[0])


def shifted(image, dy, dx, fill):
    """``image`` (C, H, W) moved down by dy and right by dx pixels, uncovered pixels set to fill."""
    padded = torch.nn.functional.pad(image, (2, 2, 2, 2), value=fill)
    height, width = image.shape[-2:]
    return padded[:, 2 - dy : 2 - dy + height, 2 - dx : 2 - dx + width]


def test_train_augmentation_is_a_shift_of_at_most_max_shift_pixels(dm):
    background = -dm.mean[0] / dm.std[0]
    clean = dm.eval_dataset("train")
    torch.manual_seed(0)
    moved = 0
    for index in range(20):
        augmented, label = dm.train_dataset[index]
        image, clean_label = clean[index]
        assert label == clean_label
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.allclose(augmented, shifted(image, dy, dx, background), atol=1e-6)
        ]
        assert matches, f"augmented train item {index} is not a shift of the clean image"
        moved += (0, 0) not in matches
    assert moved > 0


def test_augment_false_leaves_train_items_clean():
    module = DigitsDataModule(image_size=16, augment=False)
    module.setup("fit")
    assert torch.equal(stacked(module.train_dataset)[0], stacked(module.eval_dataset("train"))[0])


def test_val_loader_keeps_order_and_train_loader_shuffles(dm):
    images, labels = next(iter(dm.val_dataloader()))
    assert images.shape == (128, 1, 16, 16) and labels.dtype == torch.int64
    assert labels.tolist() == [dm.val_dataset[i][1] for i in range(128)]
    clean_train = DigitsDataModule(image_size=16, augment=False)
    clean_train.setup("fit")
    torch.manual_seed(0)
    _, train_labels = next(iter(clean_train.train_dataloader()))
    assert train_labels.tolist() != [clean_train.train_dataset[i][1] for i in range(128)]


def test_unknown_split_lists_the_valid_ones(dm):
    with pytest.raises(ValueError, match="valid splits are: train, val, test"):
        dm.eval_dataset("validation")


def test_unknown_dataset_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="known datasets are: cifar10, cifar100, digits, flowers102"):
        create_datamodule("mnist")


def test_create_datamodule_builds_by_name():
    module = create_datamodule("digits", image_size=12, batch_size=7)
    assert isinstance(module, DigitsDataModule) and module.image_size == 12 and module.batch_size == 7
    assert set(DATAMODULES) == {"digits", "cifar10", "cifar100", "flowers102"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_chans": 2}, "in_chans must be 1"),
        ({"image_size": 0}, "image_size must be >= 1"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DigitsDataModule(**kwargs)


def test_fractions_leaving_no_training_data_fail_at_construction():
    with pytest.raises(ValueError, match="sum to less than 1, leaving images for training"):
        DigitsDataModule(val_fraction=0.5, test_fraction=0.5)
