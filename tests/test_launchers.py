"""Launchers of the study runner: GPUs shared out among parallel runs, SLURM time limits and
resources, the progress lines read from ``metrics.csv``; ``--jobs 2`` and the submitit path (its
local executor: a requeued run resumes from ``last.ckpt``) end to end with a stand-in for
``train.py`` and ``probe.py``, and a two-run digits study through submitit with the real ones."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import submitit
import yaml
from test_study import BRIEF, RUNNER, wait_for
from train_helpers import REPO, probe_status

import attnconv_pl
import attnconv_pl.study.launchers as launchers
import attnconv_pl.study.runner as study_module
from attnconv_pl.analyses.training_records import COLUMNS
from attnconv_pl.errors import StudyError
from attnconv_pl.io.epoch_table import write_epochs
from attnconv_pl.study.launchers import SlurmResources, device_slots, slurm_minutes, slurm_resources
from attnconv_pl.study.progress import RunProgress
from attnconv_pl.study.runner import main


@pytest.mark.parametrize("jobs, devices, slots", [
    (2, [], [None, None]),                              # no GPU: the environment is left alone
    (2, ["0", "1", "2", "3"], ["0,1", "2,3"]),          # an equal share each
    (2, ["4", "6", "7"], ["4", "6"]),                   # the remainder unused: every run on as many GPUs
    (3, ["0", "1"], ["0", "1", "0"]),                   # fewer GPUs than runs: shared round-robin
    (1, ["0", "1"], ["0,1"]),
])
def test_parallel_runs_get_their_own_gpus(jobs, devices, slots):
    assert device_slots(jobs, devices) == slots


@pytest.mark.parametrize("value, minutes", [
    (90, 90), ("90", 90), ("1:30", 2), ("24:00:00", 1440), ("0:00:30", 1), ("2-00:00:00", 2880),
    ("1-12", 2160), ("1-0:30", 1470),
])
def test_slurm_time_limits_in_slurm_formats_become_minutes(value, minutes):
    assert slurm_minutes(value) == minutes


@pytest.mark.parametrize("value", ["1h", "", "0", "00:00:00", True, "1:2:3:4"])
def test_a_bad_time_limit_says_which_forms_slurm_takes(value):
    with pytest.raises(StudyError, match="minutes|zero"):
        slurm_minutes(value)


def test_slurm_resources_become_submitit_parameters():
    resources = slurm_resources({"time": "2:00:00", "partition": "gpu", "gpus_per_run": 4, "cpus_per_run": 32,
                                 "mem_gb": 64, "sbatch": {"account": "lab", "qos": "high"}}, "study.yaml")
    assert resources == SlurmResources(time_min=120, partition="gpu", gpus_per_run=4, cpus_per_run=32, mem_gb=64,
                                       sbatch=(("account", "lab"), ("qos", "high")))
    assert resources.parameters("s/a-seed0") == {
        "name": "s/a-seed0", "timeout_min": 120, "nodes": 1, "tasks_per_node": 4, "gpus_per_node": 4,
        "cpus_per_task": 8, "mem_gb": 64, "slurm_partition": "gpu", "slurm_signal_delay_s": launchers.SIGNAL_DELAY_S,
        "slurm_additional_parameters": {"account": "lab", "qos": "high"}}
    cpu_only = slurm_resources({"time": 30}, "study.yaml").parameters("n")
    assert (cpu_only["tasks_per_node"], cpu_only["gpus_per_node"]) == (1, 0)
    assert not {"cpus_per_task", "mem_gb", "slurm_partition"} & set(cpu_only)
    # every key is one submitit's AutoExecutor accepts
    submitit.AutoExecutor(folder="unused", cluster="debug").update_parameters(**resources.parameters("n"))


@pytest.mark.parametrize("settings, message", [
    ({"partition": "gpu"}, "needs the time limit"),
    ({"time": 10, "gpu": 1}, "unknown slurm setting.*gpu.*gpus_per_run"),
    ({"time": 10, "gpus_per_run": "two"}, "gpus_per_run must be a whole number"),
    ({"time": 10, "mem_gb": -1}, "mem_gb must be a positive number"),
    ({"time": 10, "sbatch": ["--account=x"]}, "sbatch must be a mapping"),
])
def test_bad_slurm_settings_are_refused_with_what_to_do(settings, message):
    with pytest.raises(StudyError, match=message):
        slurm_resources(settings, "study.yaml")


@pytest.mark.parametrize("flags, message", [
    (["--partition", "gpu"], "--partition set.*add --launcher slurm"),
    (["--launcher", "slurm", "--time", "10", "--jobs", "2"], "--jobs is for --launcher local"),
    (["--launcher", "slurm"], "needs the time limit"),
])
def test_flags_of_the_other_launcher_are_refused(flags, message, tmp_path, capsys):
    study = REPO / "configs" / "studies" / "attention_vs_conv_digits.yaml"
    assert main(["--config", str(study), "--runs_dir", str(tmp_path), *flags]) == 2
    error = capsys.readouterr().err
    assert "study: error: " in error and re.search(message, error)
    assert not any(tmp_path.iterdir())


def test_without_sbatch_the_slurm_launcher_says_where_to_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(launchers.shutil, "which", lambda name: None)
    study = REPO / "configs" / "studies" / "attention_vs_conv_digits.yaml"
    assert main(["--config", str(study), "--runs_dir", str(tmp_path), "--launcher", "slurm", "--time", "10"]) == 2
    assert "sbatch, which is not found here: run the study on a login node" in capsys.readouterr().err


def submitit_sbatch_lines(resources: SlurmResources, name: str, folder: Path) -> list[str]:
    """The ``#SBATCH`` lines submitit itself writes for a job of ``resources`` (its SLURM executor,
    told that srun exists)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(**resources.parameters(name))
    script = executor._executor._make_submission_file_text("python train.py", "0")
    return [line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH ")]


@pytest.mark.parametrize("resources", [
    SlurmResources(time_min=60, partition="big", gpus_per_run=2, cpus_per_run=9, mem_gb=1.5,
                   sbatch=(("account", "lab"), ("mail_type", "END"))),
    SlurmResources(time_min=5),
])
def test_the_sbatch_options_shown_are_those_submitit_writes(resources, tmp_path):
    written = submitit_sbatch_lines(resources, "s/a-seed0", tmp_path)
    submitits_own = ("--error", "--output", "--open-mode", "--wckey")  # not resources
    assert {line.split("=")[0] for line in written} >= set(submitits_own)
    assert resources.sbatch_options("s/a-seed0") == [line for line in written
                                                      if line.split("=")[0] not in submitits_own]


def test_a_slurm_dry_run_needs_no_sbatch_and_shows_each_jobs_options(tmp_path, monkeypatch, capsys):
    """The study file's slurm: mapping, flags over it, shown off the cluster (no sbatch here)."""
    monkeypatch.setattr(launchers.shutil, "which", lambda name: None)
    (tmp_path / "s.yaml").write_text(f"config: {REPO / 'configs' / 'attention_vs_conv_digits.yaml'}\n"
                                     "variants: {a: [--model.init_args.arch, conv_net]}\n"
                                     "slurm: {time: 1:00:00, partition: gpu, sbatch: {account: lab}}\n")  # not base 60
    runs = tmp_path / "runs"
    assert main(["--config", str(tmp_path / "s.yaml"), "--runs_dir", str(runs), "--seeds", "0", "--dry_run",
                 "--launcher", "slurm", "--partition", "big", "--gpus_per_run", "2"]) == 0
    expected = SlurmResources(time_min=60, partition="big", gpus_per_run=2, sbatch=(("account", "lab"),))
    job_files = runs / "s" / "a-seed0" / "slurm"
    assert (f"  sbatch {' '.join(expected.sbatch_options('s/a-seed0'))} (job files in {job_files})"
            in capsys.readouterr().out.splitlines())
    assert expected.sbatch_options("s/a-seed0")[:3] == ["--account=lab", "--gpus-per-node=2", "--job-name=s/a-seed0"]
    assert not runs.exists()


def test_without_submitit_the_slurm_launcher_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit fails as when not installed
    monkeypatch.delitem(sys.modules, "attnconv_pl.study.slurm_job", raising=False)
    monkeypatch.delattr(attnconv_pl.study, "slurm_job", raising=False)
    with pytest.raises(StudyError, match=r"--launcher slurm needs submitit: pip install 'attnconv-pl\[slurm\]'"):
        launchers.SlurmLauncher(SlurmResources(time_min=10), "study")


def metrics_row(epoch, val_acc, train_loss=0.5):
    """A row of metrics.csv in COLUMNS order."""
    return (epoch, train_loss, 0.8, 0.6, val_acc, 0.99, 1.5)


def test_progress_shows_each_new_epoch_once_with_the_latest_validation_accuracy(tmp_path):
    progress = RunProgress(tmp_path)
    assert progress.update() is None  # no metrics.csv yet
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"trainer": {"max_epochs": 10}}))
    write_epochs(tmp_path / "metrics.csv", [metrics_row(1, 0.25, 1.75)], columns=COLUMNS)
    assert progress.update() == "epoch 1/10, val_acc 0.2500, train_loss 1.7500"
    assert progress.update() is None
    write_epochs(tmp_path / "metrics.csv", [metrics_row(2, float("nan"), 1.25)], columns=COLUMNS)
    assert progress.update() == "epoch 2/10, val_acc 0.2500 (epoch 1), train_loss 1.2500"
    write_epochs(tmp_path / "metrics.csv", [metrics_row(3, 0.5)], columns=COLUMNS)
    assert progress.update() == "epoch 3/10, val_acc 0.5000, train_loss 0.5000"


STAND_IN_PROLOGUE = """\
import json, os, signal, sys, time
from pathlib import Path
args = sys.argv[1:]
value = lambda flag: args[args.index(flag) + 1]
run_dir = Path(value("--runs_dir")) / value("--experiment") / value("--run_id")
with open(run_dir.parent / "calls.jsonl", "a") as calls:
    calls.write(json.dumps({"run": run_dir.name, "argv": args, "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                            "usr2_ignored": signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN}) + "\\n")
(run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
(run_dir / "config.yaml").write_text("trainer: {max_epochs: 1}\\n")

def finish():
    (run_dir / "metrics.csv").write_text(
        "epoch,train_loss,train_acc,val_loss,val_acc,val_acc_top5,epoch_seconds\\n1,0.9,0.6,1.0,0.5,0.9,1.0\\n")
    for name in ("epoch=000.ckpt", "epoch=001.ckpt", "last.ckpt"):
        (run_dir / "checkpoints" / name).touch()
    print("final: val/acc=0.5000")
"""
"""The start of a stand-in for train.py: it records its arguments, environment and SIGUSR2
disposition in ``<experiment folder>/calls.jsonl`` and writes ``config.yaml``; ``finish()``
writes a one-epoch run's files (metrics.csv, checkpoints) and the ``final:`` line."""

STAND_IN_TOGETHER = STAND_IN_PROLOGUE + """
(run_dir.parent / f"started-{run_dir.name}").touch()
deadline = time.monotonic() + 120  # a failsafe: run one at a time, the first one waits in vain
while len(list(run_dir.parent.glob("started-*"))) < 2:
    if time.monotonic() > deadline:
        sys.exit("the other run never ran alongside this one")
    time.sleep(0.05)
finish()
"""
"""A stand-in that finishes only once a second run has started too (so only when both run at once)."""

STAND_IN_PREEMPTED = STAND_IN_PROLOGUE + """
if "--ckpt_path" not in args:
    (run_dir / "checkpoints" / "epoch=000.ckpt").touch()
    (run_dir / "checkpoints" / "last.ckpt").touch()
    signal.signal(signal.SIGTERM, lambda *_: ((run_dir / "child.sigterm").touch(), sys.exit(0)))
    (run_dir / "child.pid.tmp").write_text(f"{os.getpid()} {os.getppid()}")
    (run_dir / "child.pid.tmp").rename(run_dir / "child.pid")
    time.sleep(300)
finish()
"""
"""A stand-in whose first attempt saves ``last.ckpt`` and trains until SIGTERM, writing ``child.pid``
(its pid and its parent's, the submitit task); an attempt resuming with ``--ckpt_path`` finishes."""

STAND_IN_PROBE = """\
import sys
from pathlib import Path
out = Path(sys.argv[sys.argv.index("--out") + 1])
out.mkdir(parents=True, exist_ok=True)
(out / "report.html").write_text(" ".join(sys.argv[1:sys.argv.index("--out")]))
"""
"""A stand-in for probe.py: writes the run directories it was given into ``--out``/report.html."""


def stand_in_study(tmp_path: Path, monkeypatch, train: str, variants: str) -> Path:
    """A study of ``variants`` whose train.py is ``train`` and whose probe.py is STAND_IN_PROBE;
    the runner looks at the runs every 0.1 s."""
    (tmp_path / "train.py").write_text(train)
    (tmp_path / "probe.py").write_text(STAND_IN_PROBE)
    monkeypatch.setattr(study_module, "TRAIN_COMMAND", (sys.executable, str(tmp_path / "train.py")))
    monkeypatch.setattr(study_module, "check_train_args", lambda *args: None)  # the stand-in takes any flags
    monkeypatch.setattr(study_module, "PROBE_COMMAND", (sys.executable, str(tmp_path / "probe.py")))
    monkeypatch.setattr(launchers, "POLL_S", 0.1)
    (tmp_path / "c.yaml").write_text("trainer: {max_epochs: 1}\n")
    (tmp_path / "study.yaml").write_text(f"config: c.yaml\nvariants: {variants}\n")
    return tmp_path / "study.yaml"


def calls(experiment: Path) -> list[dict]:
    return [json.loads(line) for line in (experiment / "calls.jsonl").read_text().splitlines()]


def test_jobs_2_trains_two_runs_at_once_each_on_its_own_gpu_then_reports(tmp_path, monkeypatch, capsys):
    study = stand_in_study(tmp_path, monkeypatch, STAND_IN_TOGETHER, "{a: [], b: [--x, y]}")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    runs, out = tmp_path / "runs", tmp_path / "report"
    assert main(["--config", str(study), "--seeds", "0", "--runs_dir", str(runs), "--out", str(out),
                 "--jobs", "2"]) == 0, capsys.readouterr()
    output = capsys.readouterr().out
    for index, (run, gpu) in enumerate([("a-seed0", "3"), ("b-seed0", "5")], start=1):
        assert f"[{index}/2] {run}: training on GPU {gpu} in {runs / 'study' / run}" in output
        assert f"[{index}/2] {run}: epoch 1/1, val_acc 0.5000, train_loss 0.9000\n" in output
        assert f"[{index}/2] {run}: done in " in output and "; val/acc=0.5000" in output
    assert output.rstrip().endswith(f"report: {out / 'report.html'}")
    assert (out / "report.html").read_text() == f"{runs / 'study' / 'a-seed0'} {runs / 'study' / 'b-seed0'}"
    by_run = {call["run"]: call for call in calls(runs / "study")}
    assert {run: call["cuda"] for run, call in by_run.items()} == {"a-seed0": "3", "b-seed0": "5"}
    argv = by_run["b-seed0"]["argv"]
    assert argv[argv.index("--wandb_group") + 1] == "study" and argv[argv.index("--wandb_job_type") + 1] == "b"
    assert "--x" in argv and "--ckpt_path" not in argv


def test_stopping_the_runner_stops_every_running_child(tmp_path, monkeypatch):
    study = stand_in_study(tmp_path, monkeypatch, STAND_IN_PREEMPTED, "{a: [], b: []}")
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(tmp_path / "train.py"), "30", "--config", str(study),
                               "--seeds", "0", "--runs_dir", str(tmp_path / "runs"), "--jobs", "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    run_dirs = [tmp_path / "runs" / "study" / run for run in ("a-seed0", "b-seed0")]
    children = []
    try:
        for run_dir in run_dirs:
            wait_for(lambda run_dir=run_dir: (run_dir / "child.pid").is_file() or runner.poll() is not None, 60,
                     "the child's start")
            assert (run_dir / "child.pid").is_file(), runner.communicate()
            children.append(int((run_dir / "child.pid").read_text().split()[0]))
        runner.send_signal(signal.SIGINT)
        _, err = runner.communicate(timeout=60)
        assert runner.returncode == 130, err
        assert all((run_dir / "child.sigterm").is_file() for run_dir in run_dirs)
        assert [f"stopping the running child (pid {child})" in err for child in children] == [True, True]
    finally:
        runner.kill()
        runner.communicate()
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def preempt_when_training(run_dir: Path, errors: list) -> threading.Thread:
    """A thread that, once the stand-in runs, sends SIGUSR2 (SLURM's signal before preemption or the
    time limit) to it and to its parent, the submitit task."""
    def preempt():
        try:
            pid_file = run_dir / "child.pid"
            wait_for(pid_file.is_file, 120, "the stand-in's start")
            child, task = map(int, pid_file.read_text().split())
            os.kill(child, signal.SIGUSR2)  # SLURM may signal every process of the job: ignored
            os.kill(task, signal.SIGUSR2)
        except BaseException as error:  # reported by the test
            errors.append(error)

    thread = threading.Thread(target=preempt, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_a_submitit_job_preempted_is_requeued_and_resumes_from_last_ckpt(tmp_path, monkeypatch, capsys):
    study = stand_in_study(tmp_path, monkeypatch, STAND_IN_PREEMPTED, "{a: []}")
    runs, out = tmp_path / "runs", tmp_path / "report"
    run_dir = runs / "study" / "a-seed0"
    errors: list = []
    preempting = preempt_when_training(run_dir, errors)
    assert main(["--config", str(study), "--seeds", "0", "--runs_dir", str(runs), "--out", str(out),
                 "--launcher", "submitit-local", "--time", "30"]) == 0, capsys.readouterr()
    preempting.join()
    assert not errors, errors
    output = capsys.readouterr().out
    assert "[1/1] a-seed0: training as submitit local job " in output and "[1/1] a-seed0: done in " in output
    attempts = calls(runs / "study")
    assert [("--ckpt_path" in call["argv"]) for call in attempts] == [False, True]
    assert all(call["usr2_ignored"] for call in attempts)
    resumed = attempts[1]["argv"]
    assert resumed[resumed.index("--ckpt_path") + 1] == str(run_dir / "checkpoints" / "last.ckpt")
    assert (run_dir / "child.sigterm").is_file()  # stopped in order, not killed
    log = (run_dir / "train.log").read_text()
    assert "# preempted or at the time limit: train.py stopped; the requeued job resumes from last.ckpt" in log
    assert (out / "report.html").read_text() == str(run_dir)
    assert list((run_dir / launchers.SUBMITIT_FOLDER).iterdir())  # submitit's job files beside the run


def test_a_job_sbatch_refuses_stops_the_study_and_cancels_the_jobs_submitted(tmp_path, monkeypatch, capsys):
    study = stand_in_study(tmp_path, monkeypatch, STAND_IN_PREEMPTED, "{a: [], b: []}")
    submit = submitit.AutoExecutor.submit

    def refuse_b(executor, function):
        if function.job.run_dir.name == "b-seed0":
            raise RuntimeError("sbatch: error: invalid partition specified: nope")
        return submit(executor, function)

    monkeypatch.setattr(submitit.AutoExecutor, "submit", refuse_b)
    assert main(["--config", str(study), "--seeds", "0", "--runs_dir", str(tmp_path / "runs"),
                 "--launcher", "submitit-local", "--time", "30"]) == 2
    captured = capsys.readouterr()
    job_id = captured.out.split("[1/2] a-seed0: training as submitit local job ")[1].split()[0]
    assert "study: error: submitting the job of b-seed0 failed: sbatch: error: invalid partition" in captured.err
    assert f"cancelled job(s) {job_id}\n" in captured.err


@pytest.mark.slow
def test_a_two_run_digits_study_through_submitit_trains_both_and_reports(tmp_path, monkeypatch, capfd):
    """train.py in submitit jobs; the report's probe.py in this process (its subprocess is tested elsewhere)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(study_module, "run_probe", probe_status)
    monkeypatch.setattr(launchers, "POLL_S", 0.1)
    path = REPO / "configs" / "studies" / "attention_vs_conv_digits.yaml"
    runs, out = tmp_path / "runs", tmp_path / "report"
    assert main(["--config", str(path), "--seeds", "0", "--runs_dir", str(runs), "--out", str(out),
                 "--launcher", "submitit-local", "--time", "20", "--", *BRIEF]) == 0, capfd.readouterr()
    output = capfd.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert [run["label"] for run in summary["runs"]] == [f"attention_vs_conv_digits/{variant}-seed0"
                                                         for variant in ("attention_net", "conv_net")]
    for index, run in enumerate(summary["runs"], start=1):
        run_dir = Path(run["run_dir"])
        assert f"[{index}/2] {run_dir.name}: epoch 1/1, val_acc " in output
        assert f"[{index}/2] {run_dir.name}: done in " in output
        assert [Path(p).name for p in run["checkpoints"]] == ["epoch=000.ckpt", "epoch=001.ckpt"]
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["seed_everything"] == 0
    assert output.rstrip().endswith(f"report: {out / 'report.html'}")
    # a second call finds both finished
    assert main(["--config", str(path), "--seeds", "0", "--runs_dir", str(runs), "--dry_run",
                 "--launcher", "slurm", "--time", "20", "--", *BRIEF]) == 0
    assert capfd.readouterr().out.count("skip (finished)") == 2
