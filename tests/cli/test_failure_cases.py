"""The failure cases of the reliability audit (issue 14), one table row per case, through the command line.

Each case builds its inputs in a fresh directory and names the exit status it must end with: 2 for bad
input, 1 for a fault of the machine (a full disk). Either way stderr is one line, ``image2point CMD:
error: ...``, naming the file, option or config key at fault (``offender``) and the problem (a regular
expression), without a traceback or an exception class, and the directory tree, hashed file by file, is
the same after the command as before it: nothing created, nothing changed, no staging file left.
The number in each case's name is the item of the issue it covers. Cases the code cannot meet yet are
marked xfail (strict), with what they wait for.
"""

from __future__ import annotations

import re
import resource
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from cli_runs import (
    SCENE_POINTS,
    TINY_SCENE_RUN,
    copy_run,
    listing,
    run_cli,
    scene_points,
    the_error_line,
    write_scene,
)

from image2point.cli_contract import EXIT_BAD_INPUT, EXIT_RUNTIME_FAULT, MAX_ERROR_CHARS
from image2point.checkpoint import load_checkpoint, save_checkpoint
from image2point.models2d import create_model_2d

HUGE_COUNT = 10**12
FAR_METRES = 4e9
# A file-size limit (RLIMIT_FSIZE) that lets small files through and stops the first larger one, as a
# full disk would: config files fit, checkpoints and label arrays do not.
FULL_DISK_BYTES = 8 * 1024
# Nested YAML aliases: 9 levels of 9 references expand to 9**9 values.
ALIAS_LEVELS = 9
ALIAS_WIDTH = 9


@dataclass(frozen=True)
class Expected:
    """A command line and how it must fail."""

    argv: list[str]
    offender: str  # a path, option or key, verbatim in the error line
    problem: str  # a regular expression the error line matches
    status: int = EXIT_BAD_INPUT
    # Entered around the command: a fault of the machine (see full_disk).
    fault: Callable[[], Iterator[None]] | None = None
    # Paths whose changes the case expects (e.g. a run directory a faulted training may fill).
    may_change: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Inputs:
    root: Path
    run: Path  # a finished tiny training run (read-only; copy it to change it)

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def checkpoint(self) -> Path:
        return self.run / "last.pt"

    def predict(self, *inputs: Path, checkpoint: Path | None = None, extra: tuple[str, ...] = ()) -> list[str]:
        return ["predict", str(checkpoint or self.checkpoint), *map(str, inputs), "--out-dir", str(self.path("out")),
                *extra]

    def train(self, *words: str) -> list[str]:
        return ["train", *TINY_SCENE_RUN, f"train.run_dir={self.path('run')}", *words]

    def resume(self, *overrides: str) -> list[str]:
        run = copy_run(self.run, self.path("resumed"))
        return ["train", *TINY_SCENE_RUN, f"train.run_dir={run}", *overrides, "--resume"]


Case = Callable[[Inputs], Expected]
CASES: dict[str, Case] = {}
# Case name -> what it waits for; these are expected to fail (strictly) until then.
WAITING: dict[str, str] = {}


def case(name: str, waits_for: str | None = None) -> Callable[[Case], Case]:
    def register(make: Case) -> Case:
        assert name not in CASES, name
        CASES[name] = make
        if waits_for is not None:
            WAITING[name] = waits_for
        return make

    return register


def _variant(inputs: Inputs, name: str, change: Callable[[dict], None]) -> Path:
    """A copy of the run's last.pt with ``change`` applied to its entries (and its content hash renewed)."""
    state = load_checkpoint(inputs.checkpoint)
    change(state)
    path = inputs.path(name)
    save_checkpoint(path, state)
    return path


@contextmanager
def full_disk() -> Iterator[None]:
    """Writes beyond FULL_DISK_BYTES fail with EFBIG, as they would on a full disk with ENOSPC."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FULL_DISK_BYTES, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)


# ---------------------------------------------------------------------------------------------------
# 1-4: inputs that exhausted memory or crashed.


@case("01-ply-declaring-1e12-vertices")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("huge.ply")
    path.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex %d\nproperty float x\nproperty float y\n"
                     b"property float z\nend_header\n" % HUGE_COUNT + bytes(24))
    return Expected(inputs.predict(path), str(path), f"declares {HUGE_COUNT} vertex entries .at least "
                    f"{HUGE_COUNT * 12} bytes. but only 24 bytes follow")


@case("02-pcd-declaring-huge-counts")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("huge.pcd")
    path.write_bytes(b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH %d\nHEIGHT 1\n"
                     b"POINTS %d\nDATA binary\n" % (HUGE_COUNT, HUGE_COUNT) + bytes(24))
    return Expected(inputs.predict(path), str(path), f"declares {HUGE_COUNT} points")


@case("02-pcd-declaring-a-huge-field-count")
def _(inputs: Inputs) -> Expected:
    path = inputs.path("wide.pcd")
    path.write_bytes(b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 %d\nWIDTH 2\nHEIGHT 1\n"
                     b"POINTS 2\nDATA binary\n" % HUGE_COUNT + bytes(24))
    return Expected(inputs.predict(path), str(path), f"COUNT {HUGE_COUNT}")


@case("03-visualize-label-1e12")
def _(inputs: Inputs) -> Expected:
    scene = write_scene(inputs.path("scene.ply"))
    pred = inputs.path("pred.npy")
    np.save(pred, np.full(SCENE_POINTS, HUGE_COUNT, dtype=np.int64))
    return Expected(["visualize", str(scene), "--pred", str(pred), "--out", str(inputs.path("picture.png"))],
                    str(pred), f"label {HUGE_COUNT} is beyond the 65536 classes a picture can colour")


@case("04-coordinates-of-4e9-metres")
def _(inputs: Inputs) -> Expected:
    points, _ = scene_points()
    points[0] = FAR_METRES
    scene = write_scene(inputs.path("far.ply"), points=points)
    return Expected(inputs.predict(scene), str(scene), "coordinates out of range for voxel size 0.25")


# ---------------------------------------------------------------------------------------------------
# 5-8: options and configs that passed validation or crashed.


def _inflate(inputs: Inputs, *extra: str) -> list[str]:
    weights = inputs.path("r20_2d.pt")
    torch.save(create_model_2d("cifar_resnet20").state_dict(), weights)
    return ["inflate", "--arch", "cifar_resnet20", "--checkpoint", str(weights), "--out", str(inputs.path("r20.pt")),
            *extra]


@case("05-num-classes-negative")
def _(inputs: Inputs) -> Expected:
    return Expected(_inflate(inputs, "--num-classes", "-3"), "--num-classes", "must be at least 1, got -3")


@case("05-num-classes-zero")
def _(inputs: Inputs) -> Expected:
    return Expected(_inflate(inputs, "--num-classes", "0"), "--num-classes", "must be at least 1, got 0")


@case("06-eval-split-bogus")
def _(inputs: Inputs) -> Expected:
    return Expected(inputs.train("data.eval_split=bogus"), "data.eval_split",
                    "must be one of train, test for procedural_scenes, got 'bogus'")


@case("06-seed-negative")
def _(inputs: Inputs) -> Expected:
    return Expected(inputs.train("train.seed=-1"), "train.seed", r"must be in \[0, 4294967295\], got -1")


@case("06-seed-2-to-the-70")
def _(inputs: Inputs) -> Expected:
    return Expected(inputs.train(f"train.seed={2**70}"), "train.seed", f"got {2**70}")


@case("06-pretrain2d-seed-negative")
def _(inputs: Inputs) -> Expected:
    return Expected(["pretrain2d", "--seed", "-1", "--run-dir", str(inputs.path("run2d"))], "--seed",
                    r"seed must be in \[0, 4294967295\], got -1")


@case("07-lr-infinite")
def _(inputs: Inputs) -> Expected:
    return Expected(inputs.train("optim.lr=.inf"), "optim.lr", "must be a finite number")


@case("07-lr-nan")
def _(inputs: Inputs) -> Expected:
    return Expected(inputs.train("optim.lr=nan"), "optim.lr", "must be a finite number")


@case("07-voxel-size-1e-300")
def _(inputs: Inputs) -> Expected:
    return Expected(inputs.train("data.voxel_size=1e-300"), "data.voxel_size", "must be at least 1e-06, got 1e-300")


@case("08-yaml-alias-bomb")
def _(inputs: Inputs) -> Expected:
    levels = [f"&l0 [{', '.join(['x'] * ALIAS_WIDTH)}]"]
    levels += [f"&l{i} [{', '.join([f'*l{i - 1}'] * ALIAS_WIDTH)}]" for i in range(1, ALIAS_LEVELS)]
    config = inputs.path("bomb.yaml")
    config.write_text("optim:\n  lr:\n" + "".join(f"    - {level}\n" for level in levels))
    return Expected(["train", str(config), f"train.run_dir={inputs.path('run')}"], str(config),
                    "expands to more than 100000 values")


@case("08-yaml-duplicate-key")
def _(inputs: Inputs) -> Expected:
    config = inputs.path("twice.yaml")
    config.write_text("optim:\n  lr: 0.1\n  momentum: 0.8\n  lr: 0.2\n")
    return Expected(["train", str(config), f"train.run_dir={inputs.path('run')}"], str(config),
                    "duplicate key 'lr' .first on line 2, again on line 4")


# ---------------------------------------------------------------------------------------------------
# 9-10: checkpoints.


def _eval(inputs: Inputs, checkpoint: Path, *extra: str) -> list[str]:
    return ["eval", str(inputs.run / "config.yaml"), str(checkpoint), *extra]


@case("09-eval-model-entry-not-a-state-dict")
def _(inputs: Inputs) -> Expected:
    path = _variant(inputs, "listed.pt", lambda state: state.update(model=[1, 2, 3]))
    return Expected(_eval(inputs, path), str(path), "'model' .*not a mapping of tensors")


def _flip_a_tensor_byte(inputs: Inputs) -> Path:
    """last.pt with one byte of its largest tensor's data flipped: still a loadable file."""
    import zipfile

    path = inputs.path("flipped.pt")
    with zipfile.ZipFile(inputs.checkpoint) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        records = source.infolist()
        largest = max((info for info in records if "/data/" in info.filename), key=lambda info: info.file_size)
        for info in records:
            data = bytearray(source.read(info))
            if info.filename == largest.filename:
                data[len(data) // 2] ^= 0x10
            target.writestr(info, bytes(data))
    return path


@case("10-checkpoint-with-a-flipped-byte")
def _(inputs: Inputs) -> Expected:
    path = _flip_a_tensor_byte(inputs)
    return Expected(inputs.predict(write_scene(inputs.path("scene.ply")), checkpoint=path), str(path),
                    "content hash")


def _nan_weights(state: dict) -> None:
    name = next(key for key, tensor in state["model"].items() if tensor.is_floating_point())
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))


@case("10-predict-nan-weights")
def _(inputs: Inputs) -> Expected:
    path = _variant(inputs, "nan.pt", _nan_weights)
    return Expected(inputs.predict(write_scene(inputs.path("scene.ply")), checkpoint=path), str(path),
                    "non-finite weights")


@case("10-eval-nan-weights")
def _(inputs: Inputs) -> Expected:
    path = _variant(inputs, "nan.pt", _nan_weights)
    return Expected(_eval(inputs, path), str(path), "non-finite weights")


@case("10-export-nan-weights")
def _(inputs: Inputs) -> Expected:
    path = _variant(inputs, "nan.pt", _nan_weights)
    return Expected(["export", str(path), "--out", str(inputs.path("exported"))], str(path), "non-finite weights")


@case("10-inflate-nan-weights")
def _(inputs: Inputs) -> Expected:
    argv = _inflate(inputs)
    weights = Path(argv[argv.index("--checkpoint") + 1])
    state = torch.load(weights, weights_only=True)
    state["conv1.weight"][0, 0, 0, 0] = float("inf")
    torch.save(state, weights)
    return Expected(argv, str(weights), "non-finite weights: 1 NaN or Inf values in 'conv1.weight'")


# ---------------------------------------------------------------------------------------------------
# 11: a full disk.


@case("11-train-on-a-full-disk")
def _(inputs: Inputs) -> Expected:
    return Expected(inputs.train("--quiet"), "best.pt", "cannot write.*File too large", status=EXIT_RUNTIME_FAULT,
                    fault=full_disk, may_change=("run",))


@case("11-predict-on-a-full-disk")
def _(inputs: Inputs) -> Expected:
    scene = write_scene(inputs.path("scene.ply"))
    return Expected(inputs.predict(scene), str(inputs.path("out") / "scene.labels.npy"), "cannot write",
                    status=EXIT_RUNTIME_FAULT, fault=full_disk)


# ---------------------------------------------------------------------------------------------------
# 12-14: silent overwrites.


@case("12-eval-onto-an-earlier-evaluation")
def _(inputs: Inputs) -> Expected:
    out = inputs.path("evaluation")
    out.mkdir()
    (out / "config.yaml").write_text("an earlier evaluation's config\n")
    (out / "metrics.json").write_text("{}\n")
    return Expected(_eval(inputs, inputs.checkpoint, "--out-dir", str(out)), str(out / "config.yaml"),
                    "exists; pass --force to replace it")


@case("13-inflate-onto-an-existing-report")
def _(inputs: Inputs) -> Expected:
    argv = _inflate(inputs)
    report = inputs.path("r20.report.txt")
    report.write_text("an earlier report\n")
    return Expected(argv, str(report), "exists; pass --force to replace it")


@case("13-inflate-report-unwritable")
def _(inputs: Inputs) -> Expected:
    argv = _inflate(inputs, "--force")
    in_the_way = inputs.path("r20.report.txt")
    in_the_way.mkdir()
    return Expected(argv, str(in_the_way), "cannot write: it is a directory")


@case("14-predict-several-inputs-one-bad")
def _(inputs: Inputs) -> Expected:
    good = write_scene(inputs.path("a_good.ply"))
    points, _ = scene_points(1)
    points[0] = FAR_METRES
    bad = write_scene(inputs.path("b_far.ply"), points=points)
    return Expected(inputs.predict(good, bad), str(bad), "coordinates out of range")


# ---------------------------------------------------------------------------------------------------
# 15-18: resumes and a second training.


@case("15-resume-with-another-lr")
def _(inputs: Inputs) -> Expected:
    return Expected(inputs.resume("optim.lr=0.5"), "optim.lr", "--resume-with-changes")


@case("15-resume-with-other-data-and-seed")
def _(inputs: Inputs) -> Expected:
    return Expected(inputs.resume("data.train_samples=3", "train.seed=7"), "data.train_samples, train.seed",
                    "--resume-with-changes")


@case("16-resume-with-another-optimizer")
def _(inputs: Inputs) -> Expected:
    return Expected(inputs.resume("optim.name=adam"), "optim.name", "--resume-with-changes")


def _resume_from(inputs: Inputs, change: Callable[[dict], None]) -> list[str]:
    argv = inputs.resume()
    run = Path(next(word for word in argv if word.startswith("train.run_dir=")).split("=", 1)[1])
    state = load_checkpoint(run / "last.pt")
    change(state)
    save_checkpoint(run / "last.pt", state)
    return argv


@case("17-resume-without-scheduler-state")
def _(inputs: Inputs) -> Expected:
    return Expected(_resume_from(inputs, lambda state: state.pop("scheduler")), "last.pt", "'scheduler'")


@case("17-resume-with-a-bad-epoch")
def _(inputs: Inputs) -> Expected:
    return Expected(_resume_from(inputs, lambda state: state.update(epoch="two")), "last.pt", "'epoch'")


# ---------------------------------------------------------------------------------------------------
# 22: one contract for every command.


@case("22-usage-error-is-one-line")
def _(inputs: Inputs) -> Expected:
    return Expected(["predict", str(inputs.checkpoint)], "--out-dir", "the following arguments are required")


@case("22-export-out-dir-unknown-option")
def _(inputs: Inputs) -> Expected:
    return Expected(["export", str(inputs.checkpoint), "--out", str(inputs.path("m")), "--frobnicate"],
                    "--frobnicate", "unrecognized arguments")


@case("22-pretrain2d-lr-infinite")
def _(inputs: Inputs) -> Expected:
    return Expected(["pretrain2d", "--lr", "inf", "--run-dir", str(inputs.path("run2d"))], "--lr",
                    "must be a positive finite number, got inf")


@case("22-missing-config-file")
def _(inputs: Inputs) -> Expected:
    missing = inputs.path("absent.yaml")
    return Expected(["eval", str(missing), str(inputs.checkpoint)], str(missing), "no such config file")


# ---------------------------------------------------------------------------------------------------
# The test.


def _params():
    for name, make in CASES.items():
        marks = [pytest.mark.xfail(strict=True, reason=WAITING[name])] if name in WAITING else []
        yield pytest.param(make, id=name, marks=marks)


def test_every_item_of_the_issue_has_a_case():
    covered = {int(name.split("-")[0]) for name in CASES}
    # 18-21 are tested in test_faults_and_resume.py: they are about runs, not refused commands.
    assert covered | {18, 19, 20, 21} == set(range(1, 23))


@pytest.mark.parametrize("make", _params())
def test_failure_case_gives_one_line_and_its_status_and_writes_nothing(make, trained_run, tmp_path, capsys,
                                                                         monkeypatch):
    inputs_dir = tmp_path / "inputs"
    inputs_dir.mkdir()
    expected = make(Inputs(inputs_dir, trained_run))
    monkeypatch.chdir(tmp_path)
    before = listing(tmp_path)
    if expected.fault is None:
        outcome = run_cli(expected.argv, capsys)
    else:
        with expected.fault():
            outcome = run_cli(expected.argv, capsys)

    assert outcome.status == expected.status, outcome
    command = expected.argv[0]
    message = the_error_line(outcome, command)
    assert len(message) <= MAX_ERROR_CHARS + 40, len(message)
    assert expected.offender in message, message
    assert re.search(expected.problem, message), f"{expected.problem!r} not in {message!r}"
    after = listing(tmp_path)
    changed = {path for path in set(before) ^ set(after) | {p for p in before if before[p] != after.get(p)}}
    allowed = {path for path in changed if any(path.startswith(f"inputs/{prefix}") for prefix in expected.may_change)}
    assert changed == allowed, f"the command created or changed {sorted(changed - allowed)}"
    assert not [path for path in after if path.endswith(".tmp")], "a staging file was left behind"
