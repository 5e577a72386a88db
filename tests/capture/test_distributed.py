"""The DDP side of capture: shards, the gather back into probe-set order, flat keys."""

from __future__ import annotations

import copy
import threading

import pytest
import torch
from capture_nets import SmallNet, probe_inputs
from torch.utils.data.distributed import DistributedSampler

from attnconv_pl.capture import (
    Projector,
    capture_activations,
    flatten_activations,
    gather_in_probe_order,
    shard_indices,
    unflatten_activations,
)


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
    torch.multiprocessing.start_processes(
        _gloo_rank,
        args=(world_size, str(tmp_path / "init"), str(tmp_path / "result")),
        nprocs=world_size,
        start_method="fork",  # the ranks inherit this process's imports instead of starting afresh
    )
    single = flatten_activations(
        capture_activations(net, ["stem", "blocks.1"], [probe_inputs(n=11)])
    )
    for rank in range(world_size):
        result = torch.load(tmp_path / f"result.{rank}")
        assert list(result) == list(single)
        for key, points in single.items():
            torch.testing.assert_close(result[key], points, rtol=1e-5, atol=1e-6)
