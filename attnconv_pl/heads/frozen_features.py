"""Token features of a frozen backbone, extracted once and cached: the data of the convex heads.

A backbone turns every image of a split into tokens (s, d): the output (B, N, D) of one layer
of a model trained by ``train.py`` (a (B, C, H, W) map is read as H W tokens of C channels),
or, with backbone ``none``, the raw scikit-learn digits, each of the 8 rows of an 8 x 8 image a
token of 8 pixels in [0, 1]. The features of each split are stored once as
``<cache_dir>/<split>-<fingerprint>.safetensors`` (``tokens`` float32 (n, s, d), ``labels``
int64 (n,), the fingerprint and its settings in the metadata), written atomically. The
fingerprint is the sha256 of the backbone's identity (the checkpoint file's sha256), the layer,
the data settings and the pooling, so a changed input gets a new file and an unchanged one is
read back, never recomputed. A cached file that cannot be read back whole (truncated, not a
safetensors file, tensors of the wrong kind) is rebuilt, with a warning naming it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from attnconv_pl.data.base import ClassificationDataModule, seeded_partition
from attnconv_pl.data.digits import digits_images
from attnconv_pl.errors import ConfigError
from attnconv_pl.io.atomic import atomic_path

BACKBONE_NONE = "none"
"""The backbone name that means "no backbone": the digits' pixel rows are the tokens."""
FORMAT_VERSION = 1
"""Version of the cached files; part of the fingerprint."""


def fingerprint(settings: dict[str, Any]) -> str:
    """sha256 (hex) of ``settings`` written as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pool_features(tokens: Tensor, pool_dim: Optional[int], pool: str, seed: int, layer: str) -> Tensor:
    """Tokens (B, s, D) with their width brought to ``pool_dim`` when D is larger (else as they are).

    ``pool="project"``: each token times the fixed Gaussian matrix
    ``attnconv_pl.capture.projection_matrix(D, pool_dim, seed, layer)`` (entries N(0, 1/pool_dim),
    the probes' random projection); ``"average"``: means of adjacent features
    (``adaptive_avg_pool1d``).
    """
    if pool_dim is None or tokens.shape[-1] <= pool_dim:
        return tokens
    if pool == "average":
        return F.adaptive_avg_pool1d(tokens, pool_dim)
    from attnconv_pl.capture import projection_matrix

    return tokens @ projection_matrix(tokens.shape[-1], pool_dim, seed, layer).to(tokens.device, tokens.dtype)


def pool_token_count(tokens: Tensor, count: Optional[int]) -> Tensor:
    """Tokens (B, s, d) averaged over adjacent tokens down to ``count`` (None or s >= count: as they are)."""
    if count is None or tokens.shape[1] <= count:
        return tokens
    return F.adaptive_avg_pool1d(tokens.transpose(1, 2), count).transpose(1, 2)


def standardization(train_tokens: Tensor) -> tuple[Tensor, Tensor]:
    """``(shift, scale)`` (d,) such that ``(tokens - shift) / scale`` has, over the train split's
    tokens (n, s, d), features of mean 0 and standard deviation 1 / sqrt(d) (constant
    features: 0), i.e. tokens of unit root-mean-square norm."""
    std = train_tokens.std(dim=(0, 1))
    return train_tokens.mean(dim=(0, 1)), std.clamp_min(torch.finfo(std.dtype).tiny) * train_tokens.shape[-1] ** 0.5


def digit_rows() -> tuple[Tensor, Tensor]:
    """All 1797 bundled digits as tokens (n, 8, 8), row t of an image = token t, pixels in
    [0, 1], and their labels (n,)."""
    images, labels = digits_images(8, 1)
    return images[:, 0], labels


def layer_tokens(model: nn.Module, layer: str, batches: Iterable[Tensor], device: torch.device,
                 pool_dim: Optional[int], pool: str, seed: int) -> Tensor:
    """The tokens (n, s, d) float32 on CPU of ``layer``'s output over ``batches`` of images,
    width-pooled batch by batch (:func:`pool_features`); ``model`` runs in eval mode without
    gradients on ``device``."""
    from attnconv_pl.capture import to_points, token_width

    outputs: list[Tensor] = []

    def hook(module: nn.Module, args: tuple, output: Any) -> None:
        points = to_points(output, "tokens")
        outputs.append(points.reshape(len(points), -1, token_width(output)))

    model = model.to(device).eval()
    handle = dict(model.named_modules())[layer].register_forward_hook(hook)
    chunks = []
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch.to(device))
                chunks.append(pool_features(outputs.pop(), pool_dim, pool, seed, layer).float().cpu())
    finally:
        handle.remove()
    return torch.cat(chunks)


def read_cache(path: Path, expected: str) -> Optional[tuple[Tensor, Tensor]]:
    """``(tokens, labels)`` of a cached file whose fingerprint is ``expected``, else None (no
    file, another fingerprint, or a file that cannot be read back whole: then a warning says
    it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            if (handle.metadata() or {}).get("fingerprint") != expected:
                return None
            tokens, labels = handle.get_tensor("tokens"), handle.get_tensor("labels")
    except (SafetensorError, OSError) as error:
        problem = f"cannot be read ({error})"
    else:
        problem = cache_problem(tokens, labels)
        if problem is None:
            return tokens, labels
    rank_zero_warn(f"the cached features {path} {problem}; rebuilding the file")
    return None


def cache_problem(tokens: Tensor, labels: Tensor) -> Optional[str]:
    """What is wrong with cached ``tokens`` and ``labels`` (None when they are float32 (n, s, d)
    and int64 (n,))."""
    if tokens.dtype != torch.float32 or tokens.dim() != 3:
        return f"holds tokens of {tokens.dtype} {tuple(tokens.shape)}, not float32 (n, s, d)"
    if labels.dtype != torch.int64 or labels.shape != tokens.shape[:1]:
        return f"holds labels of {labels.dtype} {tuple(labels.shape)}, not int64 ({len(tokens)},)"
    return None


def write_cache(path: Path, tokens: Tensor, labels: Tensor, digest: str, settings: dict[str, Any]) -> None:
    """Store ``tokens`` and ``labels`` with their fingerprint and settings, atomically.

    Raises:
        ConfigError: the file cannot be written (the message names it and the setting to change).
    """
    try:
        with atomic_path(path) as tmp:
            save_file({"tokens": tokens.contiguous(), "labels": labels.contiguous()}, str(tmp),
                      metadata={"fingerprint": digest, "settings": json.dumps(settings, sort_keys=True, default=str)})
    except (SafetensorError, OSError) as error:
        raise ConfigError(f"cannot write the cached features {path} ({error}); set --data.init_args.cache_dir to a "
                          "folder you can write to") from error


@dataclass(frozen=True)
class Backbone:
    """A backbone checkpoint, ready to extract tokens.

    Attributes:
        model: the network (``ClassifierModule.model``), in eval mode.
        layer: the module whose output are the tokens.
        datamodule: the data module the backbone was trained on (overrides applied).
        settings: what identifies the features, for the fingerprint.
        shape: (s, D), tokens per image and their width before pooling.
    """

    model: nn.Module
    layer: str
    datamodule: ClassificationDataModule
    settings: dict[str, Any]
    shape: tuple[int, int]


class FrozenFeaturesDataModule(ClassificationDataModule):
    """Train / val / test splits of token features of a frozen backbone (see the module docstring).

    Items are ``(tokens, label)``: float32 (s, d) and an int in [0, num_classes). No
    augmentation (the features are computed once). For the CLI, which links ``num_classes``,
    ``in_chans`` and ``image_size`` into the model, ``in_chans`` is the token width d and
    ``image_size`` the number of tokens s (both after pooling); ``HeadModule`` reads them so.

    Args:
        backbone: ``"none"`` (digit rows, (n, 8, 8)) or the path of a checkpoint written by
            ``train.py``, read with the safe loader; its data module (from the checkpoint or
            the run's ``config.yaml``) gives the splits.
        layer: the backbone layer whose output are the tokens, a name of
            ``model.named_modules()``; None: the last ``block`` probe point of the model.
        backbone_data: arguments overriding those of the backbone's data module (e.g.
            ``{"data_dir": "/datasets"}``); not used with backbone ``none``.
        pool_dim: width of the stored tokens; wider ones are pooled to it (None: kept).
        pool: ``"project"`` (fixed seeded Gaussian projection) or ``"average"`` (adjacent
            features averaged); see :func:`pool_features`.
        pool_tokens: average adjacent tokens down to this many (None: all tokens kept).
        pool_seed: seed of the projection.
        normalize: standardise the features by the train split's statistics and scale tokens to
            unit RMS norm (:func:`standardization`), applied on loading (the cache holds the
            features as extracted). Advisable for backbone tokens: the attention heads are cubic
            in the token scale.
        cache_dir: folder of the cached features; default ``<data_dir>/frozen_features``.
        val_fraction, test_fraction: the digits' split sizes (backbone ``none``), as in
            ``DigitsDataModule``: with the same ``seed`` the same images fall in each split.
        device: where the backbone runs (``"auto"``: CUDA when available).
        extract_batch_size: images per backbone forward pass.
        data_dir, batch_size, num_workers, seed: see :class:`ClassificationDataModule`
            (``seed`` fixes the digits' split; a checkpoint's split is its data module's).
        augment: accepted for the CLI; features are never augmented.
    """

    def __init__(
        self,
        backbone: str = BACKBONE_NONE,
        layer: Optional[str] = None,
        backbone_data: Optional[dict[str, Any]] = None,
        pool_dim: Optional[int] = None,
        pool: Literal["project", "average"] = "project",
        pool_tokens: Optional[int] = None,
        pool_seed: int = 0,
        normalize: bool = False,
        cache_dir: Optional[str] = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        device: str = "auto",
        extract_batch_size: int = 256,
        data_dir: str = "data",
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        augment: bool = False,
    ) -> None:
        super().__init__(data_dir, batch_size, num_workers, seed, augment)
        if pool not in ("project", "average"):
            raise ValueError(f"pool must be 'project' or 'average', got {pool!r}")
        for name, value in (("pool_dim", pool_dim), ("pool_tokens", pool_tokens)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or null (no pooling), got {value}")
        if backbone == BACKBONE_NONE and backbone_data:
            raise ValueError("backbone_data overrides the data module of a backbone checkpoint; with backbone "
                             "'none' set seed, val_fraction and test_fraction instead")
        self.backbone, self.layer, self.backbone_data = backbone, layer, dict(backbone_data or {})
        self.pool_dim, self.pool, self.pool_tokens, self.pool_seed = pool_dim, pool, pool_tokens, pool_seed
        self.normalize = normalize
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else self.data_dir / "frozen_features"
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.extract_device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                           "cpu" if device == "auto" else device)
        self.extract_batch_size = extract_batch_size
        self._backbone: Optional[Backbone] = None
        if backbone == BACKBONE_NONE:
            self.num_classes, self._settings = 10, self._digit_settings()
            tokens, width = 8, 8
        else:
            self._backbone = self._load_backbone(Path(backbone).expanduser())
            self.num_classes, self._settings = self._backbone.datamodule.num_classes, self._backbone.settings
            tokens, width = self._backbone.shape
        self.image_size = tokens if pool_tokens is None else min(tokens, pool_tokens)
        self.in_chans = width if pool_dim is None else min(width, pool_dim)
        self.save_hyperparameters()

    def _pooling(self) -> dict[str, Any]:
        return {"pool_dim": self.pool_dim, "pool": self.pool, "pool_tokens": self.pool_tokens,
                "pool_seed": self.pool_seed}

    def _digit_settings(self) -> dict[str, Any]:
        return {"version": FORMAT_VERSION, "backbone": "sklearn-digits-8x8-rows", "layer": None,
                "data": {"seed": self.seed, "val_fraction": self.val_fraction, "test_fraction": self.test_fraction},
                **self._pooling()}

    def _load_backbone(self, path: Path) -> Backbone:
        """The backbone of checkpoint ``path`` (read with the safe loader)."""
        from attnconv_pl.capture import resolve_layers
        from attnconv_pl.io.run_dir import read_run_config
        from attnconv_pl.models import points_of_kind
        from attnconv_pl.offline.checkpoints import (
            build_module,
            data_config,
            datamodule_classes,
            read_checkpoint,
            run_dir_of,
        )

        if not path.is_file():
            raise FileNotFoundError(f"backbone checkpoint {path} does not exist; give a checkpoint written by "
                                    "train.py (runs/<experiment>/<run_id>/checkpoints/last.ckpt) or backbone 'none'")
        checkpoint = read_checkpoint(path)
        model = build_module(checkpoint, path).model.eval()
        layer = self.layer
        if layer is None:
            blocks = points_of_kind(model.feature_info, "block")
            if not blocks:
                points = ", ".join(f"{point.module} ({point.kind})" for point in model.feature_info)
                raise ValueError(f"the backbone in {path} has no 'block' probe point to take tokens from; "
                                 f"set layer to one of its probe points: {points}")
            layer = blocks[-1].module
        layers = resolve_layers(model, [layer])
        if len(layers) != 1:
            raise ValueError(f"layer {layer!r} selects {len(layers)} layers ({', '.join(layers)}); name exactly one")
        class_path, init_args = data_config(checkpoint, read_run_config(run_dir_of(path)), path)
        arguments = {**init_args, **self.backbone_data, "augment": False}
        datamodule = datamodule_classes()[class_path](**arguments)
        probe = torch.zeros(1, datamodule.in_chans, datamodule.image_size, datamodule.image_size)
        shape = layer_tokens(model, layers[0], [probe], torch.device("cpu"), None, self.pool, self.pool_seed).shape[1:]
        settings = {"version": FORMAT_VERSION, "backbone": file_sha256(path), "layer": layers[0],
                    "data": {"class_path": class_path, "init_args": arguments}, **self._pooling()}
        return Backbone(model, layers[0], datamodule, settings, (shape[0], shape[1]))

    @property
    def fingerprint(self) -> str:
        """sha256 of the settings that determine the features."""
        return fingerprint(self._settings)

    def cache_path(self, split: str) -> Path:
        """The cached features of ``split``: ``<cache_dir>/<split>-<fingerprint[:16]>.safetensors``."""
        return self.cache_dir / f"{split}-{self.fingerprint[:16]}.safetensors"

    def split_tensors(self, split: str) -> tuple[Tensor, Tensor]:
        """Tokens (n, s, d) float32 and labels (n,) int64 of ``split``: read from the cache, or
        computed and cached when absent or stale."""
        path = self.cache_path(split)
        cached = read_cache(path, self.fingerprint)
        if cached is not None:
            return cached
        tokens, labels = self._compute(split)
        tokens = pool_token_count(tokens, self.pool_tokens)
        write_cache(path, tokens, labels, self.fingerprint, self._settings)
        return tokens, labels

    def _compute(self, split: str) -> tuple[Tensor, Tensor]:
        """Features of ``split`` pooled in width (not yet in tokens), and its labels."""
        if self._backbone is None:
            tokens, labels = digit_rows()
            parts = seeded_partition(len(labels), [self.val_fraction, self.test_fraction], self.seed)
            indices = dict(zip(("train", "val", "test"), parts))[split]
            pooled = pool_features(tokens[indices], self.pool_dim, self.pool, self.pool_seed, "digit_rows")
            return pooled, labels[indices]
        loader = DataLoader(self._backbone.datamodule.eval_dataset(split), batch_size=self.extract_batch_size)
        labels: list[Tensor] = []

        def images() -> Iterable[Tensor]:
            for batch_images, batch_labels in loader:
                labels.append(torch.as_tensor(batch_labels))
                yield batch_images

        tokens = layer_tokens(self._backbone.model, self._backbone.layer, images(), self.extract_device,
                              self.pool_dim, self.pool, self.pool_seed)
        return tokens, torch.cat(labels).long()

    def _load_splits(self, splits: Iterable[str], augment_train: bool) -> dict[str, Dataset]:
        tensors = {split: self.split_tensors(split) for split in splits}
        if self.normalize:
            shift, scale = standardization(self.split_tensors("train")[0])
            tensors = {split: ((tokens - shift) / scale, labels) for split, (tokens, labels) in tensors.items()}
        return {split: TensorDataset(tokens, labels) for split, (tokens, labels) in tensors.items()}
