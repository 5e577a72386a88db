import math

import pytest
import torch

from attnconv_pl.module import ClassifierModule, warmup_cosine_factor


def test_warmup_then_cosine_closed_form():
    warmup, total = 4, 14
    factors = [warmup_cosine_factor(step, warmup, total) for step in range(total + 1)]
    assert factors[:warmup] == pytest.approx([1 / 5, 2 / 5, 3 / 5, 4 / 5])
    assert factors[warmup] == pytest.approx(1.0)
    assert factors[warmup + 5] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factors[total] == pytest.approx(0.0, abs=1e-12)


def test_module_builds_registered_model_and_loads_from_checkpoint_alone(tmp_path):
    module = ClassifierModule(arch="conv_net", num_classes=7, in_chans=1, image_size=16)
    logits = module(torch.randn(3, 1, 16, 16))
    assert logits.shape == (3, 7)
    path = tmp_path / "m.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": "2.0.0"}, path)
    loaded = ClassifierModule.load_from_checkpoint(path)
    assert loaded.hparams.arch == "conv_net" and loaded.hparams.num_classes == 7
    for name, tensor in module.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_unknown_arch_names_known_ones():
    with pytest.raises(ValueError, match="conv_net"):
        ClassifierModule(arch="no_such_net")


def test_logged_accuracy_is_the_fraction_of_inputs_classified_correctly():
    # 9 inputs of class 0 all right, 1 input of class 1 wrong: 90% of inputs, 50% per class (macro)
    module = ClassifierModule(arch="conv_net", num_classes=3, in_chans=1, image_size=16)
    logits = torch.tensor([[5.0, 0.0, 0.0]] * 10)
    labels = torch.tensor([0] * 9 + [1])
    assert module.accuracy["val_acc"](logits, labels).item() == pytest.approx(0.9)
    assert module.accuracy["val_acc_top5"](logits, labels).item() == pytest.approx(1.0)


def test_step_schedule_divides_by_ten_at_each_milestone_after_the_warm_up():
    from attnconv_pl.module import warmup_steps_factor

    factors = [warmup_steps_factor(step, 2, 100, (0.5, 0.75)) for step in (0, 1, 2, 49, 50, 74, 75, 99)]
    assert factors == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
