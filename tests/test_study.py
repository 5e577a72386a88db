"""``python -m attnconv_pl.study``: study files, run states, and short studies with train.py and
probe.py called in this process (every digits study trained briefly and compared in one report;
failures, skips and resume); the runner's child stopped with the runner and locked run directories
left alone, with a stand-in for train.py. test_launchers.py trains a study through child processes."""

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import pytest
import yaml
from test_run_lock import lock_held_by_another_process
from train_helpers import REPO, probe_status

import attnconv_pl.study.runner as study_module
from attnconv_pl.cli import TrainCLI
from attnconv_pl.models import create_model
from attnconv_pl.study import jobs, launchers
from attnconv_pl.study.command_line import parse_command_line
from attnconv_pl.study.runner import StudyError, main, run_state
from attnconv_pl.study.study_file import Study, load_study, resolve_study

STUDIES = sorted((REPO / "configs" / "studies").glob("*.yaml"))
DIGITS_STUDIES = [path for path in STUDIES if path.stem.endswith("_digits")]
BRIEF = ("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
         "--dynamics.probe_size", "32", "--dynamics.topology", "false", "--trainer.logger", "false",
         "--dynamics.capture_inputs", "false", "--dynamics.id_methods", "[twonn]", "--robustness.size", "40",
         "--single_node.train_size", "300", "--single_node.random_count", "1", "--single_node.max_iter", "30",
         "--stiffness.probe_size", "32", "--stiffness.jacobian_inputs", "1", "--stiffness.jacobian_max_iter", "30")
"""train.py flags of a brief run: one epoch of two batches, small probe sets and fits, no W&B."""


def resolved_config(study: Study, variant: str) -> dict:
    """The config train.py resolves for a variant (``--print_config``, in this process)."""
    printed = io.StringIO()
    with mock.patch.object(sys, "argv", ["train.py"]), contextlib.redirect_stdout(printed), \
            pytest.raises(SystemExit) as stopped:
        TrainCLI(args=["--config", str(study.config), *study.variants[variant], "--print_config"])
    assert stopped.value.code == 0, printed.getvalue()
    return yaml.safe_load(printed.getvalue())


@pytest.mark.parametrize("path", STUDIES, ids=lambda path: path.stem)
def test_every_study_variant_is_a_valid_train_config_whose_model_builds(path):
    study = load_study(path)
    models = []
    for variant in study.variants:
        model = resolved_config(study, variant)["model"]["init_args"]
        create_model(model["arch"], num_classes=10, in_chans=3, img_size=32, **(model["arch_kwargs"] or {}))
        models.append((model["arch"], json.dumps(model["arch_kwargs"], sort_keys=True)))
    # one variant is a study of the trained network against itself at initialisation (cct_*)
    assert len(set(models)) == len(models) >= 1, f"variants of {path.name} train the same model: {models}"


def test_a_train_config_leads_to_the_study_file_naming_it():
    for path in STUDIES:
        config = load_study(path).config
        assert resolve_study(config).path.resolve() == path.resolve()
    with pytest.raises(StudyError, match="no study file in .*studies/ names it"):
        resolve_study(REPO / "configs" / "default.yaml")


@pytest.mark.parametrize("content, message", [
    ({"variants": {"a": []}}, "no config"),
    ({"config": "../c.yaml"}, "no variants"),
    ({"config": "../c.yaml", "variants": {"a": []}, "seeds": [0]}, "unknown key.*seeds"),
    ({"config": "../nope.yaml", "variants": {"a": []}}, "nope.yaml does not exist"),
    ({"config": "../c.yaml", "variants": {}}, "at least one entry"),
    ({"config": "../c.yaml", "variants": {"a b": []}}, "cannot be part of a run id"),
    ({"config": "../c.yaml", "variants": {"a": "--model.init_args.arch conv_net"}}, "must be a list"),
    ({"config": "../c.yaml", "variants": {"a": []}, "probe": {"no": "list"}}, "probe must be a list"),
    ({"config": "../c.yaml", "variants": {"a": []}, "slurm": ["--time", "10"]}, "slurm must be a mapping"),
])
def test_bad_study_files_are_refused_with_what_to_do(tmp_path, content, message):
    (tmp_path / "c.yaml").write_text("trainer: {max_epochs: 1}\n")
    study = tmp_path / "studies" / "s.yaml"
    study.parent.mkdir()
    study.write_text(yaml.safe_dump(content))
    with pytest.raises(StudyError, match=message):
        load_study(study)


def test_flags_in_a_study_file_become_command_line_tokens(tmp_path):
    (tmp_path / "c.yaml").write_text("trainer: {max_epochs: 1}\n")
    study = tmp_path / "s.yaml"
    study.write_text("config: c.yaml\nvariants:\n  a: [--trainer.max_epochs, 3, --dynamics.topology, false]\n"
                     "  b:\nprobe: [--dynamics.topology, false]\n")
    loaded = load_study(study)
    assert loaded.variants == {"a": ("--trainer.max_epochs", "3", "--dynamics.topology", "false"), "b": ()}
    assert loaded.probe_flags == ("--dynamics.topology", "false") and loaded.name == "s"


def make_run_dir(run_dir: Path, max_epochs: int, epochs: list, last: bool = True) -> Path:
    """A run directory with train.py's file names (empty checkpoint files)."""
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"trainer": {"max_epochs": max_epochs}}))
    for epoch in epochs:
        (run_dir / "checkpoints" / f"epoch={epoch:03d}.ckpt").touch()
    if last:
        (run_dir / "checkpoints" / "last.ckpt").touch()
    return run_dir


def test_run_state_tells_finished_from_interrupted_and_new(tmp_path):
    assert run_state(tmp_path / "absent") == "new"
    assert run_state(make_run_dir(tmp_path / "init_only", 3, [0], last=False)) == "new"
    assert run_state(make_run_dir(tmp_path / "interrupted", 3, [0, 1, 2])) == "resume"
    assert run_state(make_run_dir(tmp_path / "sparse", 10, [0, 5])) == "resume"
    assert run_state(make_run_dir(tmp_path / "finished", 3, [0, 1, 2, 3])) == "finished"
    assert run_state(make_run_dir(tmp_path / "finished_sparse", 10, [0, 5, 10])) == "finished"


def test_dry_run_prints_every_run_and_trains_nothing(tmp_path, capsys):
    study = REPO / "configs" / "studies" / "attention_vs_conv_digits.yaml"
    make_run_dir(tmp_path / "attention_vs_conv_digits" / "conv_net-seed1", 1, [0, 1])
    assert main(["--config", str(study), "--seeds", "0", "1", "--runs_dir", str(tmp_path), "--dry_run",
                 "--", "--trainer.max_epochs", "1"]) == 0
    output = capsys.readouterr().out
    for run_id in ("attention_net-seed0", "attention_net-seed1", "conv_net-seed0"):
        assert f"{run_id}: train\n" in output
        assert f"--run_id {run_id} " in output
    assert "conv_net-seed1: skip (finished)" in output
    assert "--model.init_args.arch conv_net --trainer.max_epochs 1 --seed_everything 0" in output
    assert not (tmp_path / "attention_vs_conv_digits" / "attention_net-seed0").exists()


def test_the_dashed_spellings_of_the_last_release_still_work_with_one_line_each(tmp_path, capsys):
    study = REPO / "configs" / "studies" / "attention_vs_conv_digits.yaml"
    args = ["--config", str(study), "--seeds", "0", "--runs_dir", str(tmp_path)]
    assert main([*args, "--dry_run"]) == 0
    planned = capsys.readouterr()
    assert main([*args, "--dry-run"]) == 0
    assert capsys.readouterr() == (planned.out, "study: warning: --dry-run is deprecated (removed in the next "
                                                "release); use --dry_run\n")
    assert planned.err == "" and "  python -m train --config " in planned.out
    assert "report: python -m probe " in planned.out
    parsed, extra = parse_command_line(["--config", "s.yaml", "--gpus-per-run=2", "--cpus-per-run", "4", "--",
                                        "--dry-run"])
    assert (parsed.gpus_per_run, parsed.cpus_per_run, extra) == (2, 4, ["--dry-run"])  # train.py's flags untouched
    assert capsys.readouterr().err.count("is deprecated") == 2


def test_train_py_and_probe_py_start_as_installed_modules_from_any_folder(tmp_path):
    """The runner starts ``python -m train`` / ``python -m probe`` (no path to the scripts): from
    another folder they are this repository's."""
    assert study_module.TRAIN_COMMAND == (sys.executable, "-m", "train")
    assert study_module.PROBE_COMMAND == (sys.executable, "-m", "probe")
    found = subprocess.run([sys.executable, "-c", "import probe, train; print(train.__file__, probe.__file__)"],
                           cwd=tmp_path, env=jobs.child_env(), capture_output=True, text=True, timeout=60)
    assert found.stdout.split() == [str(REPO / "train.py"), str(REPO / "probe.py")], found.stderr


@pytest.mark.parametrize("variant, extra, message", [
    (["--model.init_args.archh", "conv_net"], [],
     "variant b: train.py refuses its command line: Parser key \"model\": Option 'archh' is not accepted; fix its "
     "flags in {study} (python train.py --help lists every option)"),
    (["--trainer.max_epoch", "3"], [], "variant b: train.py refuses its command line: unrecognized arguments: "
                                       "--trainer.max_epoch 3; fix its flags in {study} ("),
    ([], ["--trainer.max_epochs", "three"], "variant a: train.py refuses its command line: Parser key "
                                            "\"trainer.max_epochs\": Expected a <class 'int'>; Given value: three; fix "
                                            "its flags in {study} or after -- ("),
])
def test_a_dry_run_refuses_a_variant_train_py_would_refuse_in_one_line(variant, extra, message, tmp_path, capsys):
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump({"config": str(REPO / "configs" / "attention_vs_conv_digits.yaml"),
                                     "variants": {"a": ["--model.init_args.arch", "conv_net"], "b": variant}}))
    assert main(["--config", str(study), "--runs_dir", str(tmp_path / "runs"), "--dry_run", "--", *extra]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"study: error: {message.format(study=study)}") and captured.err.count("\n") == 1
    assert captured.out == "" and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("flag", ["--run_id", "--seed_everything=3", "--runs_dir", "--experiment", "--ckpt_path"])
def test_flags_the_runner_sets_are_refused_after_the_separator(flag, tmp_path, capsys):
    study = REPO / "configs" / "studies" / "attention_vs_conv_digits.yaml"
    assert main(["--config", str(study), "--runs_dir", str(tmp_path), "--", flag, "x"]) == 2
    assert f"{flag.split('=')[0]} after -- is set by the study runner" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def run_study(study: Path, runs_dir: Path, out: Path, *extra: str, seeds=("0",)) -> int:
    return main(["--config", str(study), "--seeds", *seeds, "--runs_dir", str(runs_dir), "--out", str(out),
                 "--", *BRIEF, *extra])


class InProcessLauncher:
    """The local launcher, one run at a time, calling ``train.main`` in this process instead of
    starting ``python train.py``: on one thread (as a child with ``OMP_NUM_THREADS=1``), the
    output goes to the run's ``train.log``, the exit status is train.py's, the run directory's
    lock is released as when the child exits."""

    capacity = 1

    def start(self, job: jobs.TrainJob, slot: int) -> jobs.Ended:
        import train
        from attnconv_pl.analyses.probe_pool import one_thread
        from attnconv_pl.cli import RUN_ID_ENV
        from attnconv_pl.io.run_lock import acquire_run_lock

        status = 0
        with jobs.appended_log(job.log, job.command, job.argv()) as log, pytest.MonkeyPatch.context() as patch, \
                redirect_stdout(log), redirect_stderr(log), one_thread():
            patch.setattr(sys, "argv", ["train.py"])
            patch.delenv(RUN_ID_ENV, raising=False)
            try:
                train.main(job.argv())
            except SystemExit as stop:
                status = stop.code
        if job.run_dir.is_dir():
            acquire_run_lock(job.run_dir).release()
        return jobs.Ended(status)

    def where(self, handle: jobs.Ended) -> str:
        return ""

    def poll(self, handle: jobs.Ended) -> jobs.Ended:
        return handle

    def stop(self, handles) -> None:
        pass


@pytest.fixture
def in_process(monkeypatch):
    """Studies run train.py and probe.py in this process (:class:`InProcessLauncher`, ``probe.main``)."""
    monkeypatch.setattr(launchers, "LocalLauncher", lambda capacity: InProcessLauncher())
    monkeypatch.setattr(launchers, "POLL_S", 0.0)
    monkeypatch.setattr(study_module, "run_probe", probe_status)


@pytest.mark.slow
@pytest.mark.parametrize("path", DIGITS_STUDIES, ids=lambda path: path.stem)
def test_each_digits_study_trains_every_variant_and_writes_the_report(path, tmp_path, capfd, in_process):
    study = load_study(path)
    out = tmp_path / "report"
    assert run_study(path, tmp_path / "runs", out) == 0, capfd.readouterr()
    output = capfd.readouterr().out
    assert output.rstrip().endswith(f"report: {out / 'report.html'}")
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    summary = json.loads((out / "summary.json").read_text())
    labels = [run["label"] for run in summary["runs"]]
    assert labels == [f"{study.name}/{variant}-seed0" for variant in study.variants]
    assert len({run["group"] for run in summary["runs"]}) == len(study.variants)
    for run in summary["runs"]:
        assert [Path(p).name for p in run["checkpoints"]] == ["epoch=000.ckpt", "epoch=001.ckpt"]
        assert (Path(run["run_dir"]) / "train.log").is_file()
    # a second call finds every run finished
    assert main(["--config", str(path), "--seeds", "0", "--runs_dir", str(tmp_path / "runs"), "--dry_run"]) == 0
    assert capfd.readouterr().out.count("skip (finished)") == len(study.variants)


@pytest.mark.slow
def test_a_failed_run_is_reported_and_the_others_still_train_skip_and_resume(tmp_path, capfd, in_process):
    """Variant ``broken`` fails (unknown model); ``conv`` trains. Then ``conv`` is put in the state of a
    two-epoch run stopped after its first epoch (its config.yaml says max_epochs 2): the rerun resumes
    it from last.ckpt, while ``broken`` fails again; each report holds the runs that finished."""
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({
        "config": str(REPO / "configs" / "attention_vs_conv_digits.yaml"),
        "variants": {"broken": ["--model.init_args.arch", "resnet_9000"],
                     "conv": ["--model.init_args.arch", "conv_net"]},
    }))
    runs, out = tmp_path / "runs", tmp_path / "report"
    broken, conv = runs / "study" / "broken-seed0", runs / "study" / "conv-seed0"

    assert run_study(tmp_path / "study.yaml", runs, out) == 1
    output = capfd.readouterr().out
    assert "[1/2] broken-seed0: FAILED (exit status 2)" in output and f"log: {broken / 'train.log'}" in output
    assert "resnet_9000" in output  # the log's last lines name the cause
    assert "[2/2] conv-seed0: done" in output and f"failed: broken-seed0: {broken / 'train.log'}" in output
    assert [run["label"] for run in json.loads((out / "summary.json").read_text())["runs"]] == ["study/conv-seed0"]

    config = yaml.safe_load((conv / "config.yaml").read_text())
    config["trainer"]["max_epochs"] = 2
    (conv / "config.yaml").write_text(yaml.safe_dump(config))
    assert run_study(tmp_path / "study.yaml", runs, out, "--trainer.max_epochs", "2") == 1
    output = capfd.readouterr().out
    assert "conv-seed0: resuming from last.ckpt" in output and "conv-seed0: done" in output
    assert (conv / "checkpoints" / "epoch=002.ckpt").is_file()
    with open(conv / "dynamics.csv", newline="") as handle:
        rows = [(r["epoch"], r["layer"], r["metric"]) for r in csv.DictReader(handle)]
    assert sorted({int(epoch) for epoch, _, _ in rows}) == [0, 1, 2] and len(rows) == len(set(rows))
    summary = json.loads((out / "summary.json").read_text())
    assert [Path(p).name for p in summary["runs"][0]["checkpoints"]][-1] == "epoch=002.ckpt"
    assert "broken-seed0: FAILED" in output


STAND_IN_TRAIN = """\
import os, signal, sys, time
from pathlib import Path
folder = Path(__file__).parent
def stop(signum, frame):
    (folder / "child.sigterm").touch()
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if "ignore" in sys.argv[0] else stop)
(folder / "child.pid.tmp").write_text(str(os.getpid()))
(folder / "child.pid.tmp").rename(folder / "child.pid")
time.sleep(300)
"""
"""A stand-in for train.py: writes its pid to ``child.pid`` and sleeps; on SIGTERM it touches
``child.sigterm`` and exits, or, when its file name contains "ignore", ignores SIGTERM."""

RUNNER = """\
import signal, sys
from pathlib import Path
import attnconv_pl.study.jobs as jobs
import attnconv_pl.study.runner as study
study.TRAIN_COMMAND = (sys.executable, sys.argv[1])
study.check_train_args = lambda *args: None  # the stand-in takes any flags
jobs.STOP_GRACE_S = float(sys.argv[2])
signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
sys.exit(study.main(sys.argv[3:]))
"""
"""The study runner with ``train.py`` replaced by ``argv[1]`` (its flags unchecked) and a grace of ``argv[2]``
seconds."""


def one_variant_study(folder: Path) -> Path:
    (folder / "c.yaml").write_text("trainer: {max_epochs: 1}\n")
    (folder / "study.yaml").write_text("config: c.yaml\nvariants:\n  a: []\n")
    return folder / "study.yaml"


def start_runner(tmp_path: Path, stand_in: str, grace_s: float = 30.0) -> subprocess.Popen:
    """The study runner, in another process, training one run with the stand-in ``stand_in``."""
    script = tmp_path / stand_in
    script.write_text(STAND_IN_TRAIN)
    return subprocess.Popen([sys.executable, "-c", RUNNER, str(script), str(grace_s),
                             "--config", str(one_variant_study(tmp_path)), "--seeds", "0",
                             "--runs_dir", str(tmp_path / "runs"), "--out", str(tmp_path / "report")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what} not within {timeout_s} s"
        time.sleep(0.05)
    return result


def gone(pid: int) -> bool:
    """Whether a process has exited (a zombie waiting for its parent counts as exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.is_file() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


@contextlib.contextmanager
def runner_and_child(tmp_path: Path, stand_in: str, grace_s: float = 30.0):
    """Yield the runner and the pid of its child once the child runs; both are killed afterwards."""
    runner = start_runner(tmp_path, stand_in, grace_s)
    pid_file = tmp_path / "child.pid"
    try:
        wait_for(lambda: pid_file.is_file() or runner.poll() is not None, 60, "the child's start")
        assert pid_file.is_file(), runner.communicate()
        child = int(pid_file.read_text())
        try:
            yield runner, child
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
    finally:
        runner.kill()
        runner.communicate()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_the_runner_stops_its_child_with_sigterm(tmp_path, signum):
    with runner_and_child(tmp_path, "train.py") as (runner, child):
        runner.send_signal(signum)
        _, err = runner.communicate(timeout=30)
        assert runner.returncode == 130, err
        assert "study: interrupted; rerun the same command to continue" in err
        wait_for(lambda: gone(child), 10, "the child's exit")
        assert (tmp_path / "child.sigterm").is_file()


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path):
    with runner_and_child(tmp_path, "train_ignore.py", grace_s=1.0) as (runner, child):
        runner.send_signal(signal.SIGTERM)
        _, err = runner.communicate(timeout=30)
        assert runner.returncode == 130, err
        assert f"stopping the running child (pid {child}); it is killed if it has not exited in 1 s" in err
        wait_for(lambda: gone(child), 10, "the child's exit")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux only")
def test_a_child_gets_sigterm_when_the_runner_is_killed(tmp_path):
    with runner_and_child(tmp_path, "train.py") as (runner, child):
        runner.kill()
        runner.wait(timeout=30)
        wait_for(lambda: gone(child), 10, "the child's exit")
        assert (tmp_path / "child.sigterm").is_file()


def test_a_run_another_process_is_writing_is_not_started_and_reported_failed(tmp_path, monkeypatch, capsys):
    stand_in = tmp_path / "train.py"
    stand_in.write_text("from pathlib import Path\nPath(__file__).with_name('ran').touch()\n")
    monkeypatch.setattr(study_module, "TRAIN_COMMAND", (sys.executable, str(stand_in)))
    monkeypatch.setattr(study_module, "check_train_args", lambda *args: None)  # the stand-in takes any flags
    run_dir = tmp_path / "runs" / "study" / "a-seed0"
    with lock_held_by_another_process(run_dir) as pid:
        (run_dir / "kept").touch()
        assert main(["--config", str(one_variant_study(tmp_path)), "--seeds", "0", "--runs_dir",
                     str(tmp_path / "runs"), "--out", str(tmp_path / "report")]) == 1
    output = capsys.readouterr().out
    assert f"[1/1] a-seed0: FAILED, not started: {run_dir} is locked by pid {pid} on " in output
    assert not (tmp_path / "ran").exists() and (run_dir / "kept").is_file()
