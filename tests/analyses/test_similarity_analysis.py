"""The similarity analysis on a tiny network: its numbers against the minibatch estimator applied
here to the layers' outputs recorded by our own hooks, across epochs, offline references, and
what it refuses."""

import copy
from contextlib import contextmanager, nullcontext

import pytest
import torch
from torch import nn

from attnconv_pl.analyses import load_analysis
from attnconv_pl.analyses.base import CheckpointInputs, LabelledInputs
from attnconv_pl.analyses.similarity import Similarity, SimilaritySettings
from attnconv_pl.errors import ConfigError
from attnconv_pl.probes.similarity import MinibatchCKA
from attnconv_pl.reports.similarity import cross_cka

LAYERS = ["conv", "act", "fc"]


class Tiny(nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv, self.act = nn.Conv2d(1, 3, 3, padding=1), nn.Tanh()
        self.fc, self.unused = nn.Linear(3 * 36, 4), nn.Linear(2, 2)
        self.probe_layers = list(LAYERS)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).flatten(1))


IMAGES = torch.randn(42, 1, 6, 6, generator=torch.Generator().manual_seed(1))
SETTINGS = SimilaritySettings(cka_batch_size=8)


def checkpoint(model, epoch, images=IMAGES, weights=None):
    """The CheckpointInputs of ``model`` at ``epoch``; ``weights``: {earlier epoch: state dict}."""
    inputs = LabelledInputs(images, torch.zeros(len(images), dtype=torch.long), torch.arange(len(images)), "synthetic",
                            "val", own_data=True)

    @contextmanager
    def weights_of(earlier):
        now = copy.deepcopy(model.state_dict())
        model.load_state_dict(weights[earlier])
        yield
        model.load_state_dict(now)

    return CheckpointInputs(epoch=epoch, model=model.eval(), device=torch.device("cpu"), autocast=nullcontext, seed=0,
                            batch_size=16, max_epochs=None, inputs=lambda split, size: inputs,
                            earlier_epochs=tuple(weights or ()), weights_of=weights_of if weights else None)


def outputs(model, images=IMAGES):
    """Each probed layer's output, flattened, by hooks of our own."""
    found = {}
    hooks = [model.get_submodule(name).register_forward_hook(
        lambda module, args, output, name=name: found.__setitem__(name, output.flatten(1))) for name in LAYERS]
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    return found


def expected_cka(now, then=None):
    """The minibatch CKA matrix over the probe set cut into 42 // 8 = 5 batches of 9, 9, 8, 8 and 8
    inputs (rows: ``now``, columns: ``then``)."""
    estimator = MinibatchCKA(LAYERS, None if then is None else LAYERS)
    for batch in torch.arange(42).split([9, 9, 8, 8, 8]):
        estimator.update({name: value[batch] for name, value in now.items()},
                         None if then is None else {name: value[batch] for name, value in then.items()})
    return estimator.compute()


def perturbed(model, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))


def test_it_is_registered_and_resolves_the_model_probe_layers():
    assert load_analysis("similarity") is Similarity
    assert Similarity.family_of("cka_with:conv").key == Similarity.family_of("cka_prev").key == "similarity"
    assert Similarity.for_model(SETTINGS, Tiny()).layers == LAYERS
    assert Similarity.for_model(SimilaritySettings(layers=["fc", "c*"]), Tiny()).layers == ["fc", "conv"]


def test_epochs_give_the_layer_matrix_and_each_layer_against_the_previous_and_first_epochs():
    model = Tiny()
    analysis = Similarity.for_model(SETTINGS, model)
    first = analysis.probe_checkpoint(checkpoint(model, 0))
    at_init = outputs(model)
    matrix = expected_cka(at_init)
    assert {metric for _, metric in first.values} == {"cka_with:conv", "cka_with:act", "cka_with:fc"}
    for row in LAYERS:
        for column in LAYERS:
            if row != column:
                assert first.values[(row, f"cka_with:{column}")] == pytest.approx(matrix[row, column], rel=1e-10)
    assert first.artifacts["matrix"].shape == (3, 3) and first.artifacts["previous_epoch"] is None

    same = analysis.probe_checkpoint(checkpoint(model, 1))  # identical weights
    for layer in LAYERS:
        assert same.values[(layer, "cka_prev")] == pytest.approx(1.0, abs=1e-12)
        assert same.values[(layer, "cka_first")] == pytest.approx(1.0, abs=1e-12)

    perturbed(model, seed=2)
    moved = analysis.probe_checkpoint(checkpoint(model, 2))
    perturbed(model, seed=3)
    later = analysis.probe_checkpoint(checkpoint(model, 3))
    model_at_2 = Tiny()
    perturbed(model_at_2, seed=2)
    against_previous = expected_cka(outputs(model), outputs(model_at_2))
    against_first = expected_cka(outputs(model), at_init)
    for layer in LAYERS:
        assert moved.values[(layer, "cka_prev")] == pytest.approx(moved.values[(layer, "cka_first")], rel=1e-12)
        assert later.values[(layer, "cka_prev")] == pytest.approx(against_previous[layer, layer], rel=1e-10)
        assert later.values[(layer, "cka_first")] == pytest.approx(against_first[layer, layer], rel=1e-10)
        assert later.values[(layer, "cka_first")] < 0.999
    assert later.artifacts["previous_epoch"] == 2 and later.artifacts["first_epoch"] == 0


def test_offline_a_checkpoint_alone_is_compared_with_the_earlier_checkpoints_it_names():
    model, weights = Tiny(), {}
    weights[0] = copy.deepcopy(model.state_dict())
    perturbed(model, seed=2)
    weights[5] = copy.deepcopy(model.state_dict())
    perturbed(model, seed=3)
    sequential = Similarity.for_model(SETTINGS, model)
    with checkpoint(model, 10, weights=weights).weights_of(0):
        sequential.probe_checkpoint(checkpoint(model, 0))
    with checkpoint(model, 10, weights=weights).weights_of(5):
        sequential.probe_checkpoint(checkpoint(model, 5))
    expected = sequential.probe_checkpoint(checkpoint(model, 10))
    alone = Similarity.for_model(SETTINGS, model).probe_checkpoint(checkpoint(model, 10, weights=weights))
    assert alone.values == pytest.approx(expected.values, rel=1e-12)
    assert alone.artifacts["previous_epoch"] == 5 and alone.artifacts["first_epoch"] == 0


def test_its_artifacts_give_two_models_layers_against_each_other_and_a_model_against_itself():
    model, other = Tiny(), Tiny(seed=4)
    analysis = Similarity.for_model(SETTINGS, model)
    first = analysis.probe_checkpoint(checkpoint(model, 0))
    assert [tuple(gram.shape) for gram in first.artifacts["grams"][0].values()] == [(9, 9)] * 3
    assert first.artifacts["grams"][0]["fc"].dtype == torch.float32 and first.artifacts["dataset"] == "synthetic"
    assert torch.equal(first.artifacts["indices"], torch.arange(42)) and first.artifacts["split"] == "val"
    theirs = Similarity.for_model(SETTINGS, other).probe_checkpoint(checkpoint(other, 0)).artifacts
    across = cross_cka(first.artifacts, theirs)
    expected = expected_cka(outputs(model), outputs(other))
    for row in LAYERS:
        for column in LAYERS:
            assert across[row, column] == pytest.approx(expected[row, column], abs=1e-5)
    assert cross_cka(first.artifacts, first.artifacts).values.numpy() == pytest.approx(first.artifacts["matrix"],
                                                                                      abs=1e-5)
    perturbed(model, seed=2)
    later = analysis.probe_checkpoint(checkpoint(model, 1)).artifacts
    assert cross_cka(later, first.artifacts).values.numpy() == pytest.approx(later["previous"], abs=1e-5)


def test_a_layer_that_never_runs_is_named():
    model = Tiny()
    analysis = Similarity.for_model(SimilaritySettings(layers=["conv", "unused"]), model)
    with pytest.raises(ValueError, match="never ran: unused"):
        analysis.probe_checkpoint(checkpoint(model, 0))


def test_a_changed_probe_set_is_refused():
    model = Tiny()
    analysis = Similarity.for_model(SETTINGS, model)
    analysis.probe_checkpoint(checkpoint(model, 0))
    with pytest.raises(ValueError, match="the probe set differs from epoch 0's"):
        analysis.probe_checkpoint(checkpoint(model, 1, images=IMAGES[:32]))


@pytest.mark.parametrize(("values", "message"), [
    ({"cka_batch_size": 3}, "cka_batch_size must be >= 4"),
    ({"probe_size": 0}, "probe_size must be >= 1"),
    ({"probe_split": "dev"}, "probe_split must be one of"),
    ({"layers": "conv"}, "layers must be a list"),
    ({"every_n_epochs": 0}, "every_n_epochs must be >= 1"),
    ({"seed": 1.5}, "seed must be an integer"),
])
def test_settings_refuse_bad_values(values, message):
    with pytest.raises(ValueError, match=message):
        SimilaritySettings(**values)


def test_a_model_without_probe_layers_needs_named_layers():
    model = Tiny()
    del model.probe_layers
    with pytest.raises(ConfigError, match="declares no probe_layers"):
        Similarity.for_model(SETTINGS, model)
