"""Activation capture: layer selection, points, projection, hooks and the DDP gather."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import threading

import pytest
import torch
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from attnconv_pl.capture import (
    ActivationRecorder,
    Projector,
    capture_activations,
    flatten_activations,
    gather_in_probe_order,
    projection_matrix,
    resolve_layers,
    shard_indices,
    to_points,
    unflatten_activations,
)


class TokenMixer(nn.Module):
    """Returns a tuple like nn.MultiheadAttention: (tokens, weights)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.proj = nn.Linear(width, width)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.proj(tokens), tokens.mean(dim=-1)


class SmallNet(nn.Module):
    """Conv maps (B, C, H, W) -> tokens (B, T, D) through a tuple-returning layer -> logits."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.blocks = nn.ModuleList([TokenMixer(4), TokenMixer(4)])
        self.head = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(x).flatten(2).transpose(1, 2)
        for block in self.blocks:
            tokens = block(tokens)[0]
        return self.head(tokens.mean(dim=1))


@pytest.fixture
def net() -> SmallNet:
    torch.manual_seed(0)
    return SmallNet()


def probe_inputs(n: int = 12) -> torch.Tensor:
    return torch.randn(n, 3, 6, 6, generator=torch.Generator().manual_seed(1))


# resolve_layers


def test_resolve_layers_keeps_pattern_order_then_module_order_without_duplicates(net):
    layers = resolve_layers(net, ["head", "blocks.*.proj", "blocks.1.proj", "stem.0"])
    assert layers == ["head", "blocks.0.proj", "blocks.1.proj", "stem.0"]
    assert resolve_layers(net, ["blocks.?"]) == ["blocks.0", "blocks.1"]


def test_resolve_layers_error_names_the_pattern_and_lists_layers_compactly(net):
    with pytest.raises(ValueError) as err:
        resolve_layers(net, ["blocks.9*"])
    message = str(err.value)
    assert "no layer matches 'blocks.9*'; layers are: " in message
    assert "blocks.*.proj (x2)" in message
    assert "stem, stem.* (x2), blocks, blocks.* (x2)" in message and message.count("head") == 1


def test_resolve_layers_never_selects_the_model_itself(net):
    assert "" not in resolve_layers(net, ["*"])


# to_points


@pytest.mark.parametrize("representation", ["flatten", "pool", "tokens"])
def test_to_points_on_vectors_is_the_identity(representation):
    x = torch.randn(4, 7)
    assert torch.equal(to_points(x, representation), x)


def test_to_points_on_tokens():
    x = torch.randn(4, 3, 5)
    flat = torch.stack([torch.cat([x[i, t] for t in range(3)]) for i in range(4)])
    assert torch.equal(to_points(x, "flatten"), flat)
    assert torch.equal(to_points(x, "tokens"), flat)
    torch.testing.assert_close(to_points(x, "pool"), x.sum(dim=1) / 3)


def test_to_points_on_maps():
    x = torch.randn(2, 3, 4, 5)
    channel_major = torch.stack(
        [torch.cat([x[i, c].reshape(-1) for c in range(3)]) for i in range(2)]
    )
    pixels_channels_last = torch.stack(
        [torch.cat([x[i, :, h, w] for h in range(4) for w in range(5)]) for i in range(2)]
    )
    assert torch.equal(to_points(x, "flatten"), channel_major)
    assert torch.equal(to_points(x, "tokens"), pixels_channels_last)
    torch.testing.assert_close(to_points(x, "pool"), x.sum(dim=(2, 3)) / 20)


def test_to_points_takes_the_first_tensor_of_a_tuple():
    x = torch.randn(2, 3, 4)
    assert torch.equal(to_points((x, None), "flatten"), x.reshape(2, 12))
    assert torch.equal(to_points([None, x], "pool"), x.mean(dim=1))


def test_to_points_rejects_unknown_representation_and_tensorless_outputs():
    with pytest.raises(ValueError, match="unknown representation 'mean'"):
        to_points(torch.randn(2, 3), "mean")
    with pytest.raises(TypeError, match="holding no tensor"):
        to_points((None, 3), "flatten")


# projection


def test_projection_matrix_is_the_same_in_another_process(tmp_path):
    out = tmp_path / "matrix.pt"
    code = (
        "import torch; from attnconv_pl.capture import projection_matrix; "
        f"torch.save(projection_matrix(300, 64, 7, 'blocks.0.attn'), {str(out)!r})"
    )
    other_hash_salt = {**os.environ, "PYTHONHASHSEED": "123"}
    subprocess.run([sys.executable, "-c", code], check=True, env=other_hash_salt)
    here = projection_matrix(300, 64, 7, "blocks.0.attn")
    assert here.dtype == torch.float32 and here.shape == (300, 64)
    assert torch.equal(torch.load(out), here)
    assert torch.equal(projection_matrix(300, 64, 7, "blocks.0.attn"), here)
    assert not torch.equal(projection_matrix(300, 64, 8, "blocks.0.attn"), here)
    assert not torch.equal(projection_matrix(300, 64, 7, "blocks.1.attn"), here)


def test_projection_matrix_has_variance_one_over_out_dim():
    matrix = projection_matrix(2000, 100, 0, "layer")
    assert abs(matrix.mean().item()) < 1e-3  # 4.5 standard errors
    assert matrix.var().item() == pytest.approx(1 / 100, rel=0.02)


def test_projection_approximately_preserves_pairwise_distances():
    points = torch.randn(150, 4096, generator=torch.Generator().manual_seed(3))
    projected = Projector(project_dim=512, seed=0).project(points, "layer")
    assert projected.shape == (150, 512)
    upper = torch.triu_indices(150, 150, offset=1)
    before = torch.cdist(points, points)[upper[0], upper[1]]
    after = torch.cdist(projected, projected)[upper[0], upper[1]]
    relative_error = (after / before - 1).abs()
    # JL: the relative error of a distance has standard deviation ~ sqrt(1 / (2 * 512)) = 0.031
    assert relative_error.mean().item() < 0.05
    assert relative_error.max().item() < 0.2


def test_projector_leaves_narrow_points_and_projects_wide_ones_or_each_token():
    projector = Projector(project_dim=8, seed=5)
    narrow = torch.randn(3, 8)
    assert projector.project(narrow, "layer") is narrow
    wide = torch.randn(3, 20)
    torch.testing.assert_close(
        projector.project(wide, "layer"), wide @ projection_matrix(20, 8, 5, "layer")
    )
    tokens = torch.randn(3, 4, 10)
    per_token = projector.project(tokens.reshape(3, 40), "layer", group_width=10)
    expected = tokens @ projection_matrix(10, 8, 5, "layer")
    torch.testing.assert_close(per_token, expected.reshape(3, 32))


# recorder and capture


def by_hand(net: SmallNet, x: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    with torch.no_grad():
        stem_out = net.stem(x)
        tokens = stem_out.flatten(2).transpose(1, 2)
        block0 = net.blocks[0].proj(tokens)
        logits = net.head(net.blocks[1].proj(block0).mean(dim=1))
    return {
        "stem": {"input": x.reshape(len(x), -1), "output": stem_out.reshape(len(x), -1)},
        "blocks.0": {"input": tokens.reshape(len(x), -1), "output": block0.reshape(len(x), -1)},
        "head": {"input": net.blocks[1].proj(block0).mean(dim=1), "output": logits},
    }


def test_capture_returns_inputs_and_outputs_as_computed_by_hand(net):
    x = probe_inputs()
    captured = capture_activations(
        net, ["stem", "blocks.0", "head"], x.split(5), projector=Projector(project_dim=1000)
    )
    expected = by_hand(net, x)
    assert list(captured) == ["stem", "blocks.0", "head"]
    for layer, sides in expected.items():
        for side, points in sides.items():
            assert captured[layer][side].dtype == torch.float32
            torch.testing.assert_close(captured[layer][side], points)


def test_capture_projects_wide_points_and_pools(net):
    x = probe_inputs()
    projector = Projector(project_dim=16, seed=2)
    captured = capture_activations(net, ["stem"], x.split(5), projector=projector)
    hand = by_hand(net, x)["stem"]
    torch.testing.assert_close(
        captured["stem"]["output"], hand["output"] @ projection_matrix(144, 16, 2, "stem")
    )
    torch.testing.assert_close(
        captured["stem"]["input"], hand["input"] @ projection_matrix(108, 16, 2, "stem")
    )
    pooled = capture_activations(net, ["stem"], [x], representation="pool", capture_inputs=False)
    assert list(pooled["stem"]) == ["output"]
    torch.testing.assert_close(pooled["stem"]["output"], net.stem(x).mean(dim=(2, 3)))


def test_capture_under_autocast_records_float32(net):
    x = probe_inputs()
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    captured = capture_activations(net, ["blocks.0"], [x], autocast=autocast)
    points = captured["blocks.0"]["output"]
    assert points.dtype == torch.float32
    torch.testing.assert_close(points, by_hand(net, x)["blocks.0"]["output"], atol=0.05, rtol=0.05)


def test_capture_restores_every_module_mode(net):
    net.train()
    net.blocks[1].eval()
    seen_training = []
    net.head.register_forward_hook(lambda module, args, out: seen_training.append(module.training))
    capture_activations(net, ["head"], [probe_inputs()])
    assert seen_training == [False]
    assert net.training and net.stem.training and not net.blocks[1].training


def test_hooks_are_removed_after_exit_and_after_an_exception(net):
    def hook_count() -> int:
        return sum(len(module._forward_hooks) for module in net.modules())

    with ActivationRecorder(net, ["stem", "blocks.?"]):
        assert hook_count() == 3
    assert hook_count() == 0
    with pytest.raises(RuntimeError, match="boom"), ActivationRecorder(net, ["stem"]):
        raise RuntimeError("boom")
    assert hook_count() == 0
    with pytest.raises(RuntimeError):
        capture_activations(net, ["stem"], [torch.randn(2, 5, 6, 6)])  # wrong channel count
    assert hook_count() == 0


def test_recorder_rejects_a_layer_called_twice_per_forward():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(3, 2))
    with pytest.raises(ValueError, match="more than once per forward pass"):
        capture_activations(model, ["0", "3"], [torch.randn(4, 3)])


def test_recorder_without_forward_pass_raises(net):
    with pytest.raises(ValueError, match="no activations were recorded"):
        capture_activations(net, ["stem"], [])


# distributed gather


def test_shard_indices_matches_distributed_sampler():
    for n_total in (1, 2, 7, 10, 12):
        for world_size in (1, 2, 3, 4):
            for rank in range(world_size):
                sampler = DistributedSampler(
                    range(n_total), num_replicas=world_size, rank=rank, shuffle=False
                )
                assert shard_indices(n_total, rank, world_size).tolist() == list(sampler)


class ThreadedAllGather:
    """Stacked all_gather across `world_size` threads, one per simulated rank.

    Like a real collective, every rank must call it the same number of times: a rank that
    skips a call leaves the others waiting until the barrier times out.
    """

    def __init__(self, world_size: int) -> None:
        self.slots: list[torch.Tensor | None] = [None] * world_size
        self.barrier = threading.Barrier(world_size, timeout=10)

    def for_rank(self, rank: int):
        def all_gather(tensor: torch.Tensor) -> torch.Tensor:
            self.slots[rank] = tensor.clone()
            self.barrier.wait()
            shapes = {slot.shape for slot in self.slots}
            assert len(shapes) == 1, f"all_gather needs equal shapes across ranks, got {shapes}"
            gathered = torch.stack(self.slots)
            self.barrier.wait()
            return gathered

        return all_gather


def run_ranks(world_size: int, rank_fn) -> list:
    results: list = [None] * world_size
    errors: list[BaseException] = []

    def target(rank: int) -> None:
        try:
            results[rank] = rank_fn(rank)
        except BaseException as err:  # reported in the main thread
            errors.append(err)

    threads = [threading.Thread(target=target, args=(rank,)) for rank in range(world_size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def distributed_sampler_shard(n_total: int, rank: int, world_size: int) -> torch.Tensor:
    sampler = DistributedSampler(range(n_total), num_replicas=world_size, rank=rank, shuffle=False)
    return torch.tensor(list(sampler))


def unrepeated_shard(n_total: int, rank: int, world_size: int) -> torch.Tensor:
    """Uneven shards without padding, as Lightning's UnrepeatedDistributedSampler splits."""
    return torch.arange(rank, n_total, world_size)


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("shard", [distributed_sampler_shard, unrepeated_shard])
def test_gather_in_probe_order_equals_one_process(net, world_size, shard):
    inputs = probe_inputs(n=11)
    layers = ["stem", "blocks.1", "head"]
    projector = Projector(project_dim=64, seed=4)
    single = flatten_activations(capture_activations(net, layers, [inputs], projector=projector))
    group = ThreadedAllGather(world_size)
    replicas = [copy.deepcopy(net) for _ in range(world_size)]  # one model per process, as in DDP

    def rank_fn(rank: int) -> dict[str, torch.Tensor]:
        positions = shard(len(inputs), rank, world_size)
        local = capture_activations(
            replicas[rank], layers, inputs[positions].split(2), projector=projector
        )
        return gather_in_probe_order(
            flatten_activations(local), positions, group.for_rank(rank), len(inputs)
        )

    gathered = run_ranks(world_size, rank_fn)
    for result in gathered:
        assert list(result) == list(single)
        for key, points in single.items():
            torch.testing.assert_close(result[key], points, rtol=1e-5, atol=1e-6)


def test_gather_with_lightning_single_process_all_gather_is_identity_up_to_order():
    points = torch.randn(4, 3)
    positions = torch.tensor([2, 0, 3, 1])
    result = gather_in_probe_order({"layer/output": points}, positions, lambda t: t, 4)
    assert torch.equal(result["layer/output"], points[torch.argsort(positions)])


def test_gather_reports_missing_positions():
    with pytest.raises(ValueError, match=r"missing: \[1, 3\]"):
        gather_in_probe_order(
            {"layer/output": torch.randn(2, 3)}, torch.tensor([0, 2]), lambda t: t, 4
        )
    with pytest.raises(ValueError, match="3 rows but local_indices has 2"):
        gather_in_probe_order(
            {"layer/output": torch.randn(3, 3)}, torch.tensor([0, 1]), lambda t: t, 2
        )


def test_flatten_and_unflatten_activations_are_inverse():
    activations = {"blocks.0.attn": {"input": torch.ones(2, 1), "output": torch.zeros(2, 3)}}
    flat = flatten_activations(activations)
    assert list(flat) == ["blocks.0.attn/input", "blocks.0.attn/output"]
    restored = unflatten_activations(flat)
    assert list(restored) == ["blocks.0.attn"]
    assert list(restored["blocks.0.attn"]) == ["input", "output"]
    for side, points in activations["blocks.0.attn"].items():
        assert restored["blocks.0.attn"][side] is points


def test_recorder_is_reusable_as_context(net):
    recorder = ActivationRecorder(net, ["head"], capture_inputs=False)
    for n in (3, 5):
        with recorder, torch.no_grad():
            net(probe_inputs(n))
        assert recorder.result()["head"]["output"].shape == (n, 5)


def _gloo_rank(rank: int, world_size: int, init_file: str, out_file: str) -> None:
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )

    def all_gather(tensor: torch.Tensor) -> torch.Tensor:
        gathered = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(gathered, tensor.contiguous())
        return torch.stack(gathered)

    try:
        torch.manual_seed(0)
        net, inputs = SmallNet(), probe_inputs(n=11)
        positions = shard_indices(len(inputs), rank, world_size)
        local = capture_activations(net, ["stem", "blocks.1"], inputs[positions].split(2))
        result = gather_in_probe_order(
            flatten_activations(local), positions, all_gather, len(inputs)
        )
        torch.save(result, f"{out_file}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_gather_over_real_gloo_processes_equals_one_process(net, tmp_path):
    world_size = 3
    torch.multiprocessing.spawn(
        _gloo_rank,
        args=(world_size, str(tmp_path / "init"), str(tmp_path / "result")),
        nprocs=world_size,
    )
    single = flatten_activations(
        capture_activations(net, ["stem", "blocks.1"], [probe_inputs(n=11)])
    )
    for rank in range(world_size):
        result = torch.load(tmp_path / f"result.{rank}")
        assert list(result) == list(single)
        for key, points in single.items():
            torch.testing.assert_close(result[key], points, rtol=1e-5, atol=1e-6)
