"""CIFAR-10 / CIFAR-100 data modules through torchvision's real loader, on tiny files written in
the real on-disk format (pickled batches with the real keys). Only the md5 check is bypassed."""

import os
import pickle
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar as tv_cifar
from folder_state import folder_state

from attnconv_pl.data import CIFAR10DataModule, CIFAR100DataModule, create_datamodule

IMAGES_PER_FILE = 20
"""CIFAR-10 has 5 train batch files, CIFAR-100 one train file of 5 x 20 images here."""
N_TRAIN, N_TEST = 5 * IMAGES_PER_FILE, IMAGES_PER_FILE
VAL_SIZE = 30


def pickle_to(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def fake_images(ids, rng):
    """Rows of 3072 uint8 (R, G, B planes of 32x32), random, with the image id in the first red pixel."""
    data = rng.integers(0, 256, size=(len(ids), 3 * 32 * 32), dtype=np.uint8)
    data[:, 0] = ids
    return data


def write_cifar10(root, rng):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for batch in range(5):
        ids = np.arange(batch * IMAGES_PER_FILE, (batch + 1) * IMAGES_PER_FILE)
        pickle_to(folder / f"data_batch_{batch + 1}", {
            "batch_label": f"training batch {batch + 1} of 5",
            "labels": (ids % 10).tolist(),
            "data": fake_images(ids, rng),
            "filenames": [f"image_{i}.png" for i in ids],
        })
    ids = np.arange(N_TRAIN, N_TRAIN + N_TEST)
    pickle_to(folder / "test_batch", {
        "batch_label": "testing batch 1 of 1",
        "labels": (ids % 10).tolist(),
        "data": fake_images(ids, rng),
        "filenames": [f"image_{i}.png" for i in ids],
    })
    pickle_to(folder / "batches.meta", {
        "num_cases_per_batch": IMAGES_PER_FILE,
        "label_names": ["airplane", "automobile", "bird", "cat", "deer",
                        "dog", "frog", "horse", "ship", "truck"],
        "num_vis": 3072,
    })


def write_cifar100(root, rng):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, ids in (("train", np.arange(N_TRAIN)), ("test", np.arange(N_TRAIN, N_TRAIN + N_TEST))):
        pickle_to(folder / name, {
            "filenames": [f"image_{i}.png" for i in ids],
            "batch_label": f"{name}ing batch 1 of 1",
            "fine_labels": (ids % 100).tolist(),
            "coarse_labels": (ids % 20).tolist(),
            "data": fake_images(ids, rng),
        })
    pickle_to(folder / "meta", {
        "fine_label_names": [f"fine_{i}" for i in range(100)],
        "coarse_label_names": [f"coarse_{i}" for i in range(20)],
    })


CIFAR_STATS = {
    CIFAR10DataModule: ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    CIFAR100DataModule: ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
"""The usual per-channel mean and std of each dataset's train images (independent of the module)."""

VARIANTS = {
    "cifar10": (CIFAR10DataModule, write_cifar10, 10),
    "cifar100": (CIFAR100DataModule, write_cifar100, 100),
}


def skip_md5(monkeypatch):
    """torchvision checks that each file exists and has the official md5; keep only the first."""
    real_check = tv_cifar.check_integrity
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: real_check(fpath))


def no_network(monkeypatch):
    def fail(*args, **kwargs):
        raise URLError("no network in the tests")
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", fail)


@pytest.fixture(params=sorted(VARIANTS))
def variant(request, tmp_path, monkeypatch):
    """(module class, data_dir holding the fake files, num_classes) for one CIFAR variant."""
    module_class, write, num_classes = VARIANTS[request.param]
    write(tmp_path, np.random.default_rng(0))
    skip_md5(monkeypatch)
    no_network(monkeypatch)
    return module_class, tmp_path, num_classes


def make(module_class, data_dir, **kwargs):
    kwargs = {"val_size": VAL_SIZE, "num_workers": 0, "batch_size": 8, **kwargs}
    return module_class(data_dir=str(data_dir), **kwargs)


def raw_images(data_dir, module_class):
    """Every image of the files as uint8 (3, 32, 32), by id, read straight from the pickles."""
    cls = module_class.torchvision_class
    images = {}
    for name, _ in cls.train_list + cls.test_list:
        with open(os.path.join(data_dir, cls.base_folder, name), "rb") as f:
            data = pickle.load(f, encoding="latin1")["data"].reshape(-1, 3, 32, 32)
        images.update({int(image[0, 0, 0]): image for image in data})
    return images


def normalised(module_class, image_uint8):
    """The expected model input for an un-augmented uint8 image (3, 32, 32)."""
    mean, std = (torch.tensor(stat).view(3, 1, 1) for stat in CIFAR_STATS[module_class])
    return (torch.from_numpy(image_uint8).float() / 255 - mean) / std


def image_id(module_class, image):
    """The id written in the first red pixel, read back from a normalised image."""
    (red_mean, *_), (red_std, *_) = CIFAR_STATS[module_class]
    return round((image[0, 0, 0].item() * red_std + red_mean) * 255)


def ids_of(module_class, dataset):
    return [image_id(module_class, dataset[i][0]) for i in range(len(dataset))]


def test_shape_attributes_are_known_before_setup(variant):
    module_class, data_dir, num_classes = variant
    module = make(module_class, data_dir)
    assert (module.num_classes, module.in_chans, module.image_size) == (num_classes, 3, 32)


def test_splits_hold_out_a_seeded_val_subset_of_the_official_train_set(variant):
    module_class, data_dir, num_classes = variant
    module = make(module_class, data_dir)
    module.setup()
    train = ids_of(module_class, module.eval_dataset("train"))
    val = ids_of(module_class, module.val_dataset)
    test = ids_of(module_class, module.test_dataset)
    assert (len(train), len(val), len(test)) == (N_TRAIN - VAL_SIZE, VAL_SIZE, N_TEST)
    assert sorted(train + val) == list(range(N_TRAIN))
    assert test == list(range(N_TRAIN, N_TRAIN + N_TEST))
    for dataset, ids in ((module.train_dataset, train), (module.val_dataset, val), (module.test_dataset, test)):
        image, label = dataset[0]
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32
        assert [dataset[i][1] for i in range(len(dataset))] == [i % num_classes for i in ids]


def test_same_seed_same_split_other_seed_other_split(variant):
    module_class, data_dir, _ = variant
    def val_ids(seed):
        return ids_of(module_class, make(module_class, data_dir, seed=seed).eval_dataset("val"))

    assert val_ids(0) == val_ids(0)
    assert val_ids(1) != val_ids(0)


def test_eval_images_are_the_files_pixels_normalised_by_the_cifar_mean_and_std(variant):
    module_class, data_dir, _ = variant
    raw = raw_images(data_dir, module_class)
    module = make(module_class, data_dir)
    for split in ("train", "val", "test"):
        dataset = module.eval_dataset(split)
        for index in range(0, len(dataset), 7):
            image, _ = dataset[index]
            torch.testing.assert_close(image, normalised(module_class, raw[image_id(module_class, image)]))


def test_eval_dataset_val_equals_the_val_split_items(variant):
    module_class, data_dir, _ = variant
    module = make(module_class, data_dir)
    module.setup("fit")
    fresh = make(module_class, data_dir).eval_dataset("val")
    for index in range(len(fresh)):
        assert torch.equal(fresh[index][0], module.val_dataset[index][0])
        assert fresh[index][1] == module.val_dataset[index][1]


def test_train_augmentation_is_a_padded_random_crop_and_flip(variant):
    module_class, data_dir, _ = variant
    raw = raw_images(data_dir, module_class)
    module = make(module_class, data_dir)
    module.setup("fit")
    torch.manual_seed(0)
    changed = 0
    for index in range(10):
        augmented, _ = module.train_dataset[index]
        clean, _ = module.eval_dataset("train")[index]
        padded = np.pad(raw[image_id(module_class, clean)], ((0, 0), (4, 4), (4, 4)))
        candidates = [
            np.flip(crop, axis=2) if flip else crop
            for top in range(9)
            for left in range(9)
            for crop in [padded[:, top : top + 32, left : left + 32]]
            for flip in (False, True)
        ]
        assert any(torch.allclose(augmented, normalised(module_class, c.copy()), atol=1e-6) for c in candidates)
        changed += not torch.equal(augmented, clean)
    assert changed > 0


def test_loaders_batch_and_keep_val_order(variant):
    module_class, data_dir, _ = variant
    module = make(module_class, data_dir)
    module.setup("fit")
    images, labels = next(iter(module.train_dataloader()))
    assert images.shape == (8, 3, 32, 32) and labels.dtype == torch.int64
    _, val_labels = next(iter(module.val_dataloader()))
    assert val_labels.tolist() == [module.val_dataset[i][1] for i in range(8)]


def test_prepare_data_does_not_download_when_the_files_are_present(variant):
    module_class, data_dir, _ = variant
    before = folder_state(data_dir)
    make(module_class, data_dir, download=True).prepare_data()
    assert before and folder_state(data_dir) == before


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_missing_files_without_download_name_the_folder_and_the_url(name, tmp_path, monkeypatch):
    no_network(monkeypatch)
    module = create_datamodule(name, data_dir=str(tmp_path), download=False)
    folder = tmp_path / module.torchvision_class.base_folder
    module.prepare_data()
    with pytest.raises(FileNotFoundError) as error:
        module.setup("fit")
    message = str(error.value)
    assert f"'{folder}/'" in message
    assert module.torchvision_class.url in message
    assert "--data.init_args.download true" in message


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_failed_download_names_the_folder_and_the_cause(name, tmp_path, monkeypatch):
    no_network(monkeypatch)
    module = create_datamodule(name, data_dir=str(tmp_path), download=True)
    with pytest.raises(FileNotFoundError, match="downloading them failed: .*no network") as error:
        module.prepare_data()
    assert f"'{tmp_path / module.torchvision_class.base_folder}/'" in str(error.value)


def test_negative_val_size_fails_at_construction(tmp_path):
    with pytest.raises(ValueError, match="val_size must be >= 0"):
        CIFAR10DataModule(data_dir=str(tmp_path), val_size=-1)


def test_val_size_too_large_for_the_train_set_says_so(variant):
    module_class, data_dir, _ = variant
    with pytest.raises(ValueError, match="at least one item is left for training"):
        make(module_class, data_dir, val_size=N_TRAIN).setup("fit")
