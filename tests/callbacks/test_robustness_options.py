"""The robustness analysis's attack settings as train.py's options: ``--robustness.attacks '[fgsm, pgd]'``
and the other fields parse from command-line strings into the callback's RobustnessSettings."""

import pytest
from jsonargparse import ArgumentParser

from attnconv_pl.analyses.robustness import RobustnessSettings
from callbacks._model_probing import model_probing_callback


@pytest.fixture(scope="module")
def parser():
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(model_probing_callback("robustness"), "robustness")
    return parser


def test_attack_options_parse_from_the_command_line_into_the_settings(parser):
    config = parser.parse_args(["--robustness.enabled", "true", "--robustness.attacks", "[fgsm, pgd]",
                                "--robustness.norm", "l2", "--robustness.eps_grid", "[0.5, 0]",
                                "--robustness.pgd_steps", "5", "--robustness.pgd_step_factor", "2",
                                "--robustness.random_start", "false"])
    callback = parser.instantiate(config).robustness
    assert callback.enabled
    assert callback.settings == RobustnessSettings(attacks=("fgsm", "pgd"), norm="l2", eps_grid=(0.0, 0.5),
                                                   pgd_steps=5, pgd_step_factor=2.0, random_start=False)


def test_by_default_the_callback_is_off_and_attacks_nothing(parser):
    callback = parser.instantiate(parser.parse_args([])).robustness
    assert not callback.enabled and callback.settings == RobustnessSettings() and callback.settings.attacks == ()


def test_an_unknown_attack_is_refused_naming_the_attacks(parser):
    with pytest.raises(ValueError, match="unknown attack 'cw'; give a list of fgsm, pgd"):
        parser.instantiate(parser.parse_args(["--robustness.attacks", "[fgsm, cw]"]))
