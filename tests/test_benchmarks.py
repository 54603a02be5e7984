"""The benchmark scripts' own logic: the anchor's data and log, and the comparison with it."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("airbench_anchor",
                                               ROOT / "benchmarks" / "airbench_anchor.py")
anchor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(anchor)  # type: ignore[union-attr]

# Rows as the public script prints them (run, epoch, train_loss, val_loss, train_acc,
# val_acc, tta_val_acc, total_time_seconds); a run's last row is its "eval" row.
LOG = """\
|  run     |  epoch  |  train_loss  |  val_loss  |  train_acc  |  val_acc  |  tta_val_acc  |  total_time_seconds  |
|       0  |      0  |      1.2000  |    1.1000  |     0.6000  |   0.6500  |               |              0.5000  |
|          |   eval  |      0.5000  |    0.6000  |     0.9000  |   0.9300  |       0.9412  |              3.9000  |
|       1  |      0  |      1.2100  |    1.1100  |     0.6100  |   0.6400  |               |              0.5100  |
|          |   eval  |      0.5100  |    0.6100  |     0.9000  |   0.9290  |       0.9388  |              3.8000  |
Mean: 0.9400    Std: 0.0017
"""


def test_the_log_gives_each_runs_tta_accuracy_and_time() -> None:
    assert anchor.parse_log(LOG) == [
        {"accuracy": 0.9412, "seconds": 3.9}, {"accuracy": 0.9388, "seconds": 3.8}]
    assert anchor.parse_log("no table here\n| a | b |\n") == []


def test_run_without_a_gpu_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert anchor.main(["run", "--script", str(tmp_path / "airbench94.py"),
                        "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a CUDA GPU" in err[0]


@pytest.mark.slow
@pytest.mark.skipif("RESNET_NB_DATA" not in os.environ, reason="needs RESNET_NB_DATA")
def test_prepare_writes_what_the_script_reads(tmp_path: Path) -> None:
    from resnet_nb.data import load_cifar10

    anchor.prepare(tmp_path)
    test = torch.load(tmp_path / "cifar10" / "test.pt", weights_only=True)
    ours = load_cifar10("test")
    assert test["images"].shape == (10_000, 32, 32, 3) and test["images"].dtype == torch.uint8
    assert torch.equal(test["images"][7], ours.images[7].permute(1, 2, 0))
    assert torch.equal(test["labels"], ours.labels) and test["classes"] == ours.classes
    train = torch.load(tmp_path / "cifar10" / "train.pt", weights_only=True)
    assert train["images"].shape == (50_000, 32, 32, 3)  # every training image


def test_time_to_accuracy_compares_a_run_with_the_anchor(tmp_path: Path) -> None:
    run = ROOT / "book" / "reference_runs" / "cpu-resnet20-strong"
    history = json.loads((run / "history.json").read_text())
    target = history[len(history) // 2]["val_acc"]
    (tmp_path / "anchor.json").write_text(json.dumps({
        "script": "airbench94.py", "gpu": "a GPU", "runs": 2,
        "accuracy_mean": target, "seconds_median": 4.0}))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "time_to_accuracy.py"), "--run", str(run),
         "--anchor", str(tmp_path / "anchor.json")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    reached = next(r for r in history if r["val_acc"] >= target)["wall_time_s"]
    assert f"at {reached:.1f} s: {reached / 4.0:.1f}x the anchor's time" in proc.stdout
