"""The single-node and stiffness runners on their own: what they ask of a model, and their numbers
against the maths applied directly to the full tensors."""

from contextlib import nullcontext

import pytest
import torch

from attnconv_pl.analyses.base import CheckpointInputs, LabelledInputs
from attnconv_pl.analyses.single_node import SingleNode, SingleNodeSettings
from attnconv_pl.analyses.stiffness import Stiffness, StiffnessSettings, rate_numbers
from attnconv_pl.models import ProbePoint, create_model
from attnconv_pl.probes import single_node as snp
from attnconv_pl.probes import stiffness as maths


def checkpoint_of(model, images, labels, seed=0):
    inputs = LabelledInputs(images, labels, torch.arange(len(images)), "synthetic", "val", own_data=True)
    return CheckpointInputs(epoch=3, model=model.eval(), device=torch.device("cpu"), autocast=nullcontext, seed=seed,
                            batch_size=16, max_epochs=None, inputs=lambda split, size: inputs)


def test_each_runner_refuses_a_model_without_what_it_needs():
    conv = create_model("conv_net", num_classes=10, in_chans=1, img_size=16)
    with pytest.raises(ValueError, match="describes no attention or feed-forward nodes"):
        SingleNode.for_model(SingleNodeSettings(), conv)
    with pytest.raises(ValueError, match="describes no residual block with its input and residual branch"):
        Stiffness.for_model(StiffnessSettings(), conv)


def test_single_node_finds_the_sub_blocks_and_their_heads():
    analysis = SingleNode.for_model(SingleNodeSettings(), create_model("cct_2_3x1_16", num_classes=7, in_chans=1,
                                                                        img_size=16))
    assert [point.module for point in analysis.points] == ["blocks.0.attn.nodes", "blocks.0.mlp.fc2",
                                                           "blocks.1.attn.nodes", "blocks.1.mlp.fc2"]
    assert analysis.num_heads == {"blocks.0.attn.nodes": 2, "blocks.1.attn.nodes": 2} and analysis.num_classes == 7


def test_single_node_numbers_are_the_maths_on_the_token_averaged_outputs():
    torch.manual_seed(0)
    model = create_model("cct_2_3x1_16", num_classes=4, in_chans=1, img_size=16)
    images, labels = torch.randn(40, 1, 16, 16), torch.arange(40) % 4
    settings = SingleNodeSettings(train_size=40, eval_size=40, random_count=2, max_iter=20)
    result = SingleNode.for_model(settings, model).probe_checkpoint(checkpoint_of(model, images, labels))

    captured = {}
    block = model.get_submodule("blocks.1.mlp.fc2")
    handle = block.register_forward_hook(lambda module, args, output: captured.__setitem__("z", output.mean(1)))
    with torch.no_grad():
        model(images)
    handle.remove()
    features = captured["z"].double()
    readout = snp.fit_readout(features, labels, 4, max_iter=20)
    clusters = snp.label_clusters(snp.node_label_matrices(snp.single_node_fields(features, readout.weight), labels, 4))
    expected = snp.cluster_statistics(clusters)
    for metric, value in expected.items():
        assert result.values[("blocks.1.mlp.fc2", metric)] == pytest.approx(value, nan_ok=True), metric
    assert result.values[("blocks.1.mlp.fc2", "snp_readout_acc")] == snp.readout_accuracy(features, labels,
                                                                                         readout.weight, readout.bias)
    assert result.values[("blocks.1.mlp.fc2", "snp_readout_converged")] == float(readout.converged) == 1.0
    assert ("blocks.1.mlp.fc2", "head_jaccard") not in result.values
    assert ("blocks.1.attn.nodes", "head_jaccard") in result.values
    drawn = result.artifacts["sub_blocks"]["blocks.1.attn.nodes"]
    assert drawn["head_sets"].shape == (2, 4) and drawn["cluster_sizes"].shape == (64,)


def test_stiffness_of_a_diagonal_branch_is_the_ratio_of_its_factors():
    lambdas = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    x = torch.rand(30, 4, dtype=torch.float64) + 0.1
    numbers = rate_numbers(x, x * lambdas, gate=torch.rand(30, 4), settings=StiffnessSettings())
    assert numbers["stiffness_feature"] == pytest.approx(8.0)
    assert numbers["rate_mean"] == pytest.approx(float(lambdas.mean()))
    assert set(numbers) >= {"gate_mean", "gate_std", "gate_rate_spearman"}


@pytest.mark.parametrize("attn", ["none", "step"])
def test_stiffness_rates_from_channel_norms_equal_the_rates_of_the_full_tensors(attn):
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, in_chans=1, img_size=8, attn=attn)
    images = torch.randn(12, 1, 8, 8)
    settings = StiffnessSettings(jacobian_inputs=2, jacobian_max_iter=200, jacobian_tol=1e-4)
    result = Stiffness.for_model(settings, model).probe_checkpoint(checkpoint_of(model.eval(), images,
                                                                                 torch.zeros(12, dtype=torch.long)))
    full = {}
    block = model.get_submodule("layer2.0")
    hooks = [block.shortcut.register_forward_hook(lambda m, a, out: full.__setitem__("x", out)),
             block.branch.register_forward_hook(lambda m, a, out: full.__setitem__("fx", out)),
             block.register_forward_pre_hook(lambda m, a: full.__setitem__("input", a[0]))]
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    x, fx = full["x"].double(), full["fx"].double()
    assert result.values[("layer2.0", "stiffness_feature")] == pytest.approx(maths.feature_stiffness(x, fx), rel=1e-5)
    assert result.values[("layer2.0", "rate_mean")] == pytest.approx(maths.rate_mean(x, fx), rel=1e-5)
    assert (("layer2.0", "gate_mean") in result.values) == (attn == "step")
    assert ("layer2.0" in result.artifacts["channels"]) == (attn == "step")
    if attn == "step":
        rates, gates = result.artifacts["channels"]["layer2.0"]
        torch.testing.assert_close(torch.from_numpy(rates), maths.channel_rates(x, fx), rtol=1e-5, atol=0)
        assert gates.shape == rates.shape == (32,)
    exact = [torch.linalg.svdvals(torch.autograd.functional.jacobian(block.branch, full["input"][i:i + 1])
                                  .flatten(0, 3).flatten(1).double())[0] for i in range(2)]
    assert result.values[("layer2.0", "jacobian_sigma_max")] == pytest.approx(float(sum(exact) / 2), rel=1e-3)
    assert result.values[("layer2.0", "jacobian_converged")] == 1.0


def test_jacobian_inputs_stopped_by_the_budget_are_marked_and_warned_once_naming_the_setting(recwarn):
    """``jacobian_converged`` is the fraction of a block's inputs that reached the tolerance; one
    warning per epoch names each block with stopped inputs and the setting to raise."""
    blocks = [ProbePoint(name, "block", 3, extras={"input": f"{name}.in", "residual": f"{name}.branch"})
              for name in ("a", "b")]
    norms = {name: {"input": torch.rand(5, 3, dtype=torch.float64) + 0.1,
                    "residual": torch.rand(5, 3, dtype=torch.float64)} for name in ("a", "b")}
    sigma_max, sigma_min = torch.tensor([4.0, 6.0, 8.0, 2.0], dtype=torch.float64), torch.full((4,), 2.0)
    stopped = torch.tensor([True, False, True, True])
    settings = StiffnessSettings(jacobian_max_iter=30)
    values = Stiffness(settings, blocks).run(1, norms, {
        "a": maths.SingularExtremes(sigma_max, sigma_min, stopped),
        "b": maths.SingularExtremes(sigma_max, sigma_min, torch.ones(4, dtype=torch.bool))}).values
    assert values[("a", "jacobian_converged")] == 0.75 and values[("b", "jacobian_converged")] == 1.0
    assert values[("a", "stiffness_jacobian")] == values[("b", "stiffness_jacobian")] == 2.5
    assert [str(w.message) for w in recwarn] == [
        "stiffness: Lanczos stopped at jacobian_max_iter=30 steps before jacobian_tol=0.001 for some inputs (a 1 "
        "of 4); their stiffness_jacobian and jacobian_sigma_max are unconverged estimates (no bounds), marked by "
        "jacobian_converged < 1. Raise stiffness.jacobian_max_iter (train.py: --stiffness.jacobian_max_iter; "
        "probe.py: --stiffness.jacobian_max_iter N)."]
