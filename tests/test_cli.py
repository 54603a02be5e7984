"""``python -m resnet_nb.train``: every user mistake is one line, a non-zero exit, no lost run.

Each test asserts the exit code, that stderr is a single ``error: ...`` line naming
the problem and the fix, that no traceback is printed, and - where a run existed -
that it is still there and still loads.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnet_nb.cli import main
from resnet_nb.state import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TIMING_FIELDS = ("images_per_s", "wall_time_s", "epoch_time_s")


def _args(out: Path, *extra: str, epochs: int = 2, model: str = "resnet20") -> list[str]:
    return ["--dataset", "synthetic", "--model", model, "--train-limit", "128",
            "--val-size", "32", "--batch-size", "64", "--epochs", str(epochs), "--lr", "0.1",
            "--device", "cpu", "--precision", "fp32", "--seed", "7", "--out", str(out),
            "--no-progress", *extra]


def _one_error_line(err: str, *needles: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small finished run, copied by the tests that need one."""
    out = tmp_path_factory.mktemp("runs") / "finished"
    assert main(_args(out)) == 0
    return out


def _copy(run: Path, tmp_path: Path) -> tuple[Path, bytes]:
    dest = tmp_path / "run"
    shutil.copytree(run, dest)
    return dest, (dest / "checkpoint.pt").read_bytes()


def _assert_kept(out: Path, checkpoint_bytes: bytes) -> None:
    assert (out / "checkpoint.pt").read_bytes() == checkpoint_bytes
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] >= 1
    assert not list(out.glob("*.tmp*")), "a temporary file was left behind"


# ----------------------------------------------------------------------------- settings


def test_bad_parameter_exits_2_in_a_real_process_without_traceback() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "resnet_nb.train", "--epochs", "0",
                           "--dataset", "synthetic"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2
    _one_error_line(proc.stderr, "epochs=0", "positive integer")


def test_unknown_profile_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, ["--profile", "quik"])
    assert code == 2
    _one_error_line(err, "profile='quik'", "quick", "full")


def test_finished_run_records_command_and_prints_result_without_progress(
    finished_run: Path,
) -> None:
    from resnet_nb.report import portable_text

    metrics = json.loads((finished_run / "metrics.json").read_text())
    typed = "python -m resnet_nb.train " + " ".join(_args(finished_run))
    assert metrics["command"] == portable_text(typed) != typed  # no machine path kept
    assert str(finished_run) not in json.dumps(metrics)
    assert metrics["device_name"].startswith("cpu") and metrics["python"]
    assert metrics["config"]["train_limit"] == 128 and metrics["train_images"] == 128


def test_no_progress_still_prints_the_final_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, _args(tmp_path / "r", epochs=1))
    assert code == 0 and err == ""
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("done: resnet20 1 epochs, val acc ")


# ----------------------------------------------------------------------------- run folder


def test_out_that_is_a_file_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    code, _, err = _run(capsys, _args(target))
    assert code == 1
    _one_error_line(err, f"out={target}", "is a file", "folder")
    assert target.read_text() == "keep me"


def test_unwritable_out_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "locked"
    out.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == out
                        else real_access(p, mode))  # root could write anyway
    code, _, err = _run(capsys, _args(out))
    assert code == 1
    _one_error_line(err, "not writable", str(out))


def test_out_on_a_full_disk_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    code, _, err = _run(capsys, _args(tmp_path / "r"))
    assert code == 1
    _one_error_line(err, "MB free", "free some space")
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_disk_filling_during_a_write_keeps_the_last_good_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import resnet_nb.state as state

    out = tmp_path / "r"
    real_save = torch.save
    calls = {"n": 0}

    def filling_save(obj, f, *a, **k):  # noqa: ANN001, ANN002, ANN003
        calls["n"] += 1
        if calls["n"] == 2:  # the second epoch's checkpoint: write part, then fail
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(state.torch, "save", filling_save)
    code, _, err = _run(capsys, _args(out))
    assert code == 1
    _one_error_line(err, "is full", "checkpoint.pt", "previous copy")
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    assert not list(out.glob("*.tmp*"))


def test_existing_run_is_never_overwritten_silently(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, before = _copy(finished_run, tmp_path)
    code, _, err = _run(capsys, _args(out))
    assert code == 1
    _one_error_line(err, "already holds a run", "--resume", "--out", "--overwrite")
    _assert_kept(out, before)
    code, _, _ = _run(capsys, _args(out, "--overwrite", epochs=1))
    assert code == 0 and load_checkpoint(out / "checkpoint.pt")["epoch"] == 1


def test_resume_with_nothing_to_resume_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, _args(tmp_path / "empty", "--resume"))
    assert code == 1
    _one_error_line(err, "no run to resume", "drop --resume")


def test_resume_with_changed_settings_is_refused(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, before = _copy(finished_run, tmp_path)
    argv = _args(out, "--resume", epochs=3)
    argv[argv.index("--lr") + 1] = "0.05"
    code, _, err = _run(capsys, argv)
    assert code == 2
    _one_error_line(err, "other settings", "lr=0.05", "the run: 0.1")
    _assert_kept(out, before)


def test_resume_into_another_architecture_is_refused(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, before = _copy(finished_run, tmp_path)
    code, _, err = _run(capsys, _args(out, "--resume", model="plain20"))
    assert code == 2
    _one_error_line(err, "model='plain20'", "resnet20")
    _assert_kept(out, before)


@pytest.mark.parametrize("damage", ["empty", "truncated", "random"])
def test_damaged_checkpoint_is_one_line_without_unsafe_advice(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    out, good = _copy(finished_run, tmp_path)
    bad = {"empty": b"", "truncated": good[: len(good) // 2],
           "random": torch.randint(0, 256, (4096,), dtype=torch.uint8,
                                   generator=torch.Generator().manual_seed(0)).numpy().tobytes()}
    (out / "checkpoint.pt").write_bytes(bad[damage])
    code, _, err = _run(capsys, _args(out, "--resume"))
    assert code == 1
    line = _one_error_line(err, "checkpoint.pt")
    assert "weights_only=False" not in line and "weights_only" not in line


def test_resumed_run_says_where_it_resumes(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = _copy(finished_run, tmp_path)
    checkpoint = load_checkpoint(out / "checkpoint.pt")
    checkpoint["config"]["epochs"] = 3  # as if started with 3 epochs and stopped after 2
    torch.save(checkpoint, out / "checkpoint.pt")
    code, stdout, err = _run(capsys, _args(out, "--resume", epochs=3))
    assert code == 0, err
    assert f"resuming {out} after epoch 2 of 3" in stdout


# ----------------------------------------------------------------------------- data


def test_corrupt_data_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "cifar10-jpeg.zip").write_bytes(b"PK\x03\x04 this is not a zip archive")
    monkeypatch.setenv("RESNET_NB_DATA", str(root))
    monkeypatch.setenv("RESNET_NB_CACHE", str(tmp_path / "cache"))
    argv = _args(tmp_path / "r", epochs=1)
    argv[argv.index("--dataset") + 1] = "cifar10"
    code, _, err = _run(capsys, argv)
    assert code == 1
    _one_error_line(err, "cifar10-jpeg.zip")


# ----------------------------------------------------------------------------- a killed run


_KILL_SCRIPT = """
import os, signal, sys
from resnet_nb.train import Callback, TrainConfig, fit

out, kill_at = sys.argv[1], int(sys.argv[2])

class KillAt(Callback):
    def on_step_end(self, run):
        if run.state.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

config = TrainConfig(dataset="synthetic", model="resnet20", train_limit=256, val_size=64,
                     batch_size=64, epochs=3, lr=0.2, device="cpu", seed=7, out=out,
                     resume=os.path.exists(os.path.join(out, "checkpoint.pt")))
fit(config, callbacks=[KillAt()] if kill_at >= 0 else [], progress=False)
"""


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    script = tmp_path / "killable.py"
    script.write_text(_KILL_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    # 4 steps per epoch: step index 5 is the second step of epoch 2
    proc = subprocess.run([sys.executable, str(script), str(killed), "5"], env=env,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(killed / "checkpoint.pt")["epoch"] == 1
    assert not (killed / "metrics.json").exists()
    subprocess.run([sys.executable, str(script), str(killed), "-1"], env=env, check=True,
                   timeout=300)
    subprocess.run([sys.executable, str(script), str(clean), "-1"], env=env, check=True,
                   timeout=300)

    a, b = load_checkpoint(killed / "checkpoint.pt"), load_checkpoint(clean / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == 3
    for name in b["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name

    def strip(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]

    assert strip(a["history"]) == strip(b["history"])
    ma = json.loads((killed / "metrics.json").read_text())
    mb = json.loads((clean / "metrics.json").read_text())
    assert ma["test_acc"] == mb["test_acc"] and ma["test_loss"] == mb["test_loss"]
