"""Flowers-102 data module through torchvision's real loader, on a tiny dataset written in the real
on-disk format (jpg/image_NNNNN.jpg, imagelabels.mat, setid.mat). Only the md5 check is bypassed."""

from urllib.error import URLError

import numpy as np
import pytest
import scipy.io
import torch
import torchvision.datasets.flowers102 as tv_flowers
from folder_state import folder_state
from PIL import Image

from attnconv_pl.data import Flowers102DataModule, create_datamodule

IMAGE_SIZE = 32
N_IMAGES = 12
SPLIT_IDS = {"train": [3, 1, 7, 10], "val": [2, 12, 5], "test": [4, 6, 8, 9, 11]}
"""1-based image ids per split, as in setid.mat (trnid, valid, tstid)."""
LABELS = [1, 102, 5, 5, 17, 40, 2, 99, 102, 1, 60, 33]
"""1-based label of image id i at position i - 1, as in imagelabels.mat."""
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
STRIPE_FRACTION = 0.2
"""The left 20% of every image is white, so crops and flips change it; the rest is one colour."""


def colour(image_id):
    return (37 * image_id % 256, 255 - 19 * image_id, 90 + 13 * image_id)


def write_flowers(root):
    folder = root / "flowers-102"
    (folder / "jpg").mkdir(parents=True)
    for image_id in range(1, N_IMAGES + 1):
        width, height = 60 + 3 * image_id, 48 + 2 * image_id
        pixels = np.empty((height, width, 3), dtype=np.uint8)
        pixels[:] = colour(image_id)
        pixels[:, : int(STRIPE_FRACTION * width)] = 255
        Image.fromarray(pixels).save(folder / "jpg" / f"image_{image_id:05d}.jpg", quality=95)
    scipy.io.savemat(folder / "imagelabels.mat", {"labels": np.array([LABELS], dtype=np.uint8)})
    scipy.io.savemat(folder / "setid.mat", {
        "trnid": np.array([SPLIT_IDS["train"]], dtype=np.uint16),
        "valid": np.array([SPLIT_IDS["val"]], dtype=np.uint16),
        "tstid": np.array([SPLIT_IDS["test"]], dtype=np.uint16),
    })


def no_network(monkeypatch):
    def fail(*args, **kwargs):
        raise URLError("no network in the tests")
    monkeypatch.setattr(tv_flowers, "download_and_extract_archive", fail)
    monkeypatch.setattr(tv_flowers, "download_url", fail)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    write_flowers(tmp_path)
    real_check = tv_flowers.check_integrity
    monkeypatch.setattr(tv_flowers, "check_integrity", lambda fpath, md5=None: real_check(fpath))
    no_network(monkeypatch)
    return tmp_path


def make(data_dir, **kwargs):
    kwargs = {"image_size": IMAGE_SIZE, "num_workers": 0, "batch_size": 2, **kwargs}
    return Flowers102DataModule(data_dir=str(data_dir), **kwargs)


def expected_centre(image_id):
    """The normalised colour (3,) of image ``image_id`` away from its white stripe."""
    rgb = torch.tensor(colour(image_id), dtype=torch.float32) / 255
    return (rgb - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)


def test_shape_attributes_are_known_before_setup(tmp_path):
    module = Flowers102DataModule(data_dir=str(tmp_path), image_size=96)
    assert (module.num_classes, module.in_chans, module.image_size) == (102, 3, 96)


def test_the_official_splits_are_used_with_zero_based_labels(data_dir):
    module = make(data_dir)
    module.setup()
    for split, ids in SPLIT_IDS.items():
        dataset = getattr(module, f"{split}_dataset")
        assert len(dataset) == len(ids)
        assert [dataset[i][1] for i in range(len(dataset))] == [LABELS[image_id - 1] - 1 for image_id in ids]
        image, _ = dataset[0]
        assert image.shape == (3, IMAGE_SIZE, IMAGE_SIZE) and image.dtype == torch.float32
    labels = [LABELS[i - 1] - 1 for ids in SPLIT_IDS.values() for i in ids]
    assert min(labels) == 0 and max(labels) == 101


def test_eval_images_are_the_photos_centre_normalised_by_imagenet_statistics(data_dir):
    module = make(data_dir)
    for split, ids in SPLIT_IDS.items():
        dataset = module.eval_dataset(split)
        for index, image_id in enumerate(ids):
            image, _ = dataset[index]
            centre = image[:, 12:20, 12:20].mean(dim=(1, 2))
            torch.testing.assert_close(centre, expected_centre(image_id), atol=0.05, rtol=0)


def test_eval_dataset_val_equals_the_val_split_items(data_dir):
    module = make(data_dir)
    module.setup("fit")
    fresh = make(data_dir).eval_dataset("val")
    for index in range(len(fresh)):
        assert torch.equal(fresh[index][0], module.val_dataset[index][0])


def test_train_items_are_randomly_augmented_but_eval_train_items_are_fixed(data_dir):
    module = make(data_dir)
    module.setup("fit")
    clean = module.eval_dataset("train")
    assert torch.equal(clean[0][0], make(data_dir).eval_dataset("train")[0][0])
    torch.manual_seed(0)
    draws = [module.train_dataset[0][0] for _ in range(4)]
    assert all(draw.shape == (3, IMAGE_SIZE, IMAGE_SIZE) for draw in draws)
    assert any(not torch.equal(draw, draws[0]) for draw in draws[1:])
    assert not any(torch.equal(draw, clean[0][0]) for draw in draws)


def test_loaders_batch_and_keep_val_order(data_dir):
    module = make(data_dir)
    module.setup("fit")
    images, labels = next(iter(module.train_dataloader()))
    assert images.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE) and labels.dtype == torch.int64
    _, val_labels = next(iter(module.val_dataloader()))
    assert val_labels.tolist() == [LABELS[i - 1] - 1 for i in SPLIT_IDS["val"][:2]]


def test_prepare_data_does_not_download_when_the_files_are_present(data_dir):
    before = folder_state(data_dir)
    make(data_dir, download=True).prepare_data()
    assert before and folder_state(data_dir) == before


def test_missing_files_without_download_name_the_folder_and_the_url(tmp_path, monkeypatch):
    no_network(monkeypatch)
    module = create_datamodule("flowers102", data_dir=str(tmp_path), download=False)
    with pytest.raises(FileNotFoundError) as error:
        module.setup("fit")
    message = str(error.value)
    assert f"'{tmp_path / 'flowers-102'}/'" in message
    assert "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/" in message
    assert "--data.init_args.download true" in message


def test_failed_download_names_the_folder_and_the_cause(tmp_path, monkeypatch):
    no_network(monkeypatch)
    module = create_datamodule("flowers102", data_dir=str(tmp_path), download=True)
    with pytest.raises(FileNotFoundError, match="downloading them failed: .*no network") as error:
        module.prepare_data()
    assert f"'{tmp_path / 'flowers-102'}/'" in str(error.value)


def test_unknown_split_lists_the_valid_ones(data_dir):
    with pytest.raises(ValueError, match="valid splits are: train, val, test"):
        make(data_dir).eval_dataset("trainval")
