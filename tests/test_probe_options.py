"""probe.py's command line (``attnconv_pl.offline.options``), parsed without probing anything:
options generated from every settings dataclass, the deprecated spellings, ``--config`` and
``--print_config``, and one-line errors."""

import dataclasses
from dataclasses import dataclass

import pytest
import yaml

import probe
from attnconv_pl.analyses import ANALYSES, Analysis, list_analyses, load_analysis
from attnconv_pl.analyses.session import ProbingSettings
from attnconv_pl.analyses.training_records import TrainingRecords
from attnconv_pl.errors import ProbeInputError
from attnconv_pl.offline import options
from attnconv_pl.offline.assemble import unreachable_target
from attnconv_pl.offline.data_choice import DataChoice
from attnconv_pl.reports.records import ProbedRun


def parse(*args):
    return options.parse_args(["RUN", "--out", "R", *args])


def request(*args):
    """The parsed command line as a dict, without the config files it read."""
    parsed = parse(*args).as_dict()
    parsed.pop("config")
    return parsed


def test_every_field_of_every_settings_dataclass_is_an_option_and_none_has_a_default():
    parser = options.build_parser()
    sections = {"probing": ProbingSettings, **{name: load_analysis(name).settings_type for name in list_analyses()}}
    expected = {f"--{section}.{field.name}" for section, settings in sections.items()
                for field in dataclasses.fields(settings)}
    offered = {option for action in parser._actions for option in action.option_strings}
    assert expected <= offered and len(expected) > 50
    assert options.settings_given(parse()) == {}  # a setting not given stays the run's
    assert options.settings_given(parse("--stiffness.jacobian_tol", "0.01", "--probing.precision", "bf16-mixed")) == {
        "probing": {"precision": "bf16-mixed"}, "stiffness": {"jacobian_tol": 0.01}}


@dataclass(frozen=True)
class ToySettings:
    """A made-up analysis's settings.

    Args:
        strength: how strongly the toy pokes the layers.
        modes: which pokes.
    """

    strength: float = 1.0
    modes: tuple[str, ...] = ("a",)


class ToyAnalysis(Analysis):
    name = "toy"
    settings_type = ToySettings

    def run(self, epoch, **needs):
        raise NotImplementedError


def test_an_analysis_added_to_the_registry_gets_its_options_with_no_other_edit(monkeypatch, capsys):
    monkeypatch.setitem(ANALYSES, "toy", (__name__, "ToyAnalysis"))
    parsed = parse("--analyses", "toy", "--toy.strength", "0.5", "--toy.modes", "[b, c]")
    assert parsed.analyses == ["toy"]
    assert options.settings_given(parsed) == {"toy": {"strength": 0.5, "modes": ("b", "c")}}
    assert probe.main(["--help"]) == 0
    assert "--toy.strength STRENGTH" in capsys.readouterr().out.replace("\n", " ")


OLD_AND_NEW = [
    (("--probe-size", "50"), ("--probing.probe_size", "50")),
    (("--probe-size=50",), ("--probing.probe_size", "50")),
    (("--seed", "7"), ("--probing.seed", "7")),
    (("--batch-size", "8"), ("--probing.batch_size", "8")),
    (("--layers", "mixer", "blocks.*"), ("--dynamics.layers", "[mixer, blocks.*]")),
    (("--id-methods", "mle"), ("--dynamics.id_methods", "[mle]")),
    (("--no-topology",), ("--dynamics.topology", "false")),
    (("--topology",), ("--dynamics.topology", "true")),
    (("--no-capture-inputs",), ("--dynamics.capture_inputs", "false")),
    (("--representation", "pool"), ("--dynamics.representation", "pool")),
    (("--project-dim", "64"), ("--dynamics.project_dim", "64")),
    (("--max-points", "40"), ("--dynamics.max_points", "40")),
    (("--max-dim", "0"), ("--dynamics.max_dim", "0")),
    (("--snapshot-dtype", "float32"), ("--dynamics.snapshot_dtype", "float32")),
    (("--set", "single_node.threshold=0.5"), ("--single_node.threshold", "0.5")),
    (("--set", "dynamics.layers=[head]"), ("--dynamics.layers", "[head]")),
    (("--robustness",), ("--analyses", "dynamics", "training_records", "robustness")),
    (("--robustness", "1", "0"),
     ("--analyses", "dynamics", "training_records", "robustness", "--robustness.noise_levels", "[1, 0]")),
    (("--analyses", "stiffness", "--robustness", "0.5"),
     ("--analyses", "stiffness", "robustness", "--robustness.noise_levels", "[0.5]")),
    (("--robustness-size", "50"), ("--robustness.size", "50")),
    (("--target-loss", "0.25"), ("--training_records.target_loss", "0.25")),
    (("--data-dir", "D"), ("--data_dir", "D")),
    (("--arch-kwargs", "{dim: 16}"), ("--arch_kwargs", "{dim: 16}")),
    (("--data-kwargs", "{in_chans: 3}"), ("--data_kwargs", "{in_chans: 3}")),
    (("--diagram-epochs", "0", "all"), ("--diagram_epochs", "0", "all")),
    (("--run-name", "a", "--run-name", "b"), ("--run_name", "a", "b")),
]


@pytest.mark.parametrize("old, new", OLD_AND_NEW, ids=lambda args: " ".join(args))
def test_a_deprecated_spelling_gives_the_same_request_and_one_line_naming_the_new_one(old, new, capsys):
    assert request(*new) == request(*old) != request()
    deprecated = next(token.split("=")[0] for token in old if token not in new)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"probe.py: warning: {deprecated} is deprecated")
    assert f"use {new[0]}" in lines[0]


def test_a_config_file_equals_the_same_options_given_as_flags(tmp_path):
    (tmp_path / "probe.yaml").write_text(
        "out: R\nprobing: {probe_size: 500}\ndynamics: {topology: false, layers: [mixer]}\n"
        "analyses: [dynamics, robustness]\nrobustness: {noise_levels: [0.5, 0]}\nrun_name: [attn]\n")
    flags = request("--probing.probe_size", "500", "--dynamics.topology", "false", "--dynamics.layers", "[mixer]",
                    "--analyses", "dynamics", "robustness", "--robustness.noise_levels", "[0.5, 0]",
                    "--run_name", "attn")
    from_file = options.parse_args(["RUN", "--config", str(tmp_path / "probe.yaml")]).as_dict()
    from_file.pop("config")
    assert from_file == flags
    assert options.settings_given(options.parse_args(["RUN", "--config", str(tmp_path / "probe.yaml"),
                                                      "--probing.probe_size", "50"]))["probing"] == {"probe_size": 50}


def test_print_config_prints_the_resolved_config_which_reads_back_the_same(tmp_path, capsys):
    args = ["RUN", "OTHER", "--out", "R", "--probing.seed", "3", "--dynamics.id_methods", "[mle]", "--wandb",
            "--diagram_epochs", "0", "all", "--single_node.threshold", "0.25"]
    assert probe.main([*args, "--print_config"]) == 0
    printed = capsys.readouterr().out
    assert yaml.safe_load(printed)["dynamics"] == {"id_methods": ["mle"]}
    (tmp_path / "printed.yaml").write_text(printed)
    read_back = options.parse_args(["--config", str(tmp_path / "printed.yaml")]).as_dict()
    read_back.pop("config")
    given = options.parse_args(args).as_dict()
    given.pop("config")
    assert read_back == given


@pytest.mark.parametrize("args, message", [
    (("--robustness.noise_levels", "[x]"), "robustness.noise_levels\": Expected a <class 'float'>. Got value: x"),
    (("--diagram_epochs", "last"), "'last' is not an epoch: give epoch numbers >= 0"),
    (("--diagram_epochs", "-1"), "'-1' is not an epoch"),
    (("--analyses", "stiffnes"), "invalid choice: 'stiffnes'"),
    (("--dynamics.topology", "maybe"), "Expected a <class 'bool'>. Got value: maybe"),
    (("--probing.precision", "64"), "Given value: 64"),
    (("--dynamics.no_such_field", "1"), "unrecognized arguments: --dynamics.no_such_field 1"),
])
def test_a_bad_command_line_exits_2_with_one_line(args, message, capsys):
    assert probe.main(["RUN", "--out", "R", *args]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("probe.py: error: ") and message in lines[0], lines


def test_settings_of_an_analysis_not_run_are_refused():
    with pytest.raises(ProbeInputError, match="--robustness.size sets the robustness analysis, which this call does "
                                              "not run; add it to the analyses: --analyses dynamics robustness"):
        probe.check_settings_of_analyses_run({"robustness": {"size": 50}}, {"dynamics"})
    probe.check_settings_of_analyses_run({"robustness": {"size": 50}}, {"dynamics", "robustness"})


def test_robustness_on_another_dataset_is_refused_and_a_split_is_its_split():
    with pytest.raises(ProbeInputError, match="needs the run's own dataset"):
        probe.robustness_split(parse("--data", "digits"), DataChoice.parse("digits"))
    assert probe.robustness_split(parse("--data", "test"), DataChoice.parse("test")) == {"split": "test"}
    assert probe.robustness_split(parse(), DataChoice.parse(None)) == {}


def test_a_target_below_the_label_smoothing_floor_is_warned_about():
    records = TrainingRecords(epochs=3, target_loss=0.5, epochs_to_target_loss=None, seconds_to_target_loss=None,
                              best_val_acc=0.5, best_val_acc_epoch=3, final_val_acc=0.5, final_train_loss=0.9)
    run = ProbedRun(label="cifar/s0", group="g", layers=["a"], rows=[(3, "a", "variance", 1.0)],
                    artifacts={"training_records": {3: {"records": records, "loss_floor": 0.5003}}})
    assert "smallest mean training loss run cifar/s0 can reach (0.5003" in unreachable_target(run)
    reachable = dataclasses.replace(records, target_loss=1.0)
    assert unreachable_target(dataclasses.replace(
        run, artifacts={"training_records": {3: {"records": reachable, "loss_floor": 0.5003}}})) is None
