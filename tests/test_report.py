"""Recorded runs: time to accuracy, run folders and the reference runs kept in book/."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from resnet_nb.report import load_run, reference_runs, run_summary, time_to_accuracy

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "book" / "reference_runs"

HISTORY = [
    {"epoch": 1, "val_acc": 0.50, "wall_time_s": 10.0, "images_per_s": 100.0, "train_acc": 0.4},
    {"epoch": 2, "val_acc": 0.93, "wall_time_s": 12.0, "images_per_s": 300.0, "train_acc": 0.8},
    {"epoch": 3, "val_acc": 0.91, "wall_time_s": 14.0, "images_per_s": 200.0, "train_acc": 0.9},
    {"epoch": 4, "val_acc": 0.95, "wall_time_s": 16.0, "images_per_s": 250.0, "train_acc": 0.9},
]


def test_time_to_accuracy_is_the_first_epoch_at_or_above_the_target() -> None:
    assert time_to_accuracy(HISTORY, 0.92)["epoch"] == 2
    assert time_to_accuracy(HISTORY, 0.95)["epoch"] == 4  # equal counts as reached
    assert time_to_accuracy(HISTORY, 0.96) is None
    with pytest.raises(ValueError, match="target=94"):
        time_to_accuracy(HISTORY, 94)


def test_run_summary_of_a_run_folder(tmp_path: Path) -> None:
    (tmp_path / "history.json").write_text(json.dumps(HISTORY))
    (tmp_path / "metrics.json").write_text(json.dumps({
        "test_acc": 0.94, "best_val_acc": 0.95, "wall_time_s": 16.5, "device_name": "cuda: X",
        "config": {"model": "resnet18", "stem": "cifar", "epochs": 4, "batch_size": 512,
                   "compile": True},
    }))
    summary = run_summary(load_run(tmp_path), targets=(0.9, 0.94, 0.99))
    assert summary["reached"] == {0.9: 12.0, 0.94: 16.0, 0.99: None}
    assert summary["images_per_s"] == 250.0  # median of epochs 2-4, the first warms up
    assert summary["model"] == "resnet18 (cifar stem)" and summary["compiled"]


def test_an_unfinished_run_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "history.json").write_text(json.dumps(HISTORY))
    with pytest.raises(FileNotFoundError, match="metrics.json is missing"):
        load_run(tmp_path)


def test_reference_runs_carry_their_provenance() -> None:
    runs = reference_runs(REFERENCE)
    assert runs, f"no recorded run under {REFERENCE}"
    for run in runs:
        m, history, prov = run["metrics"], run["history"], run["provenance"]
        assert re.fullmatch(r"[0-9a-f]{40}", prov.get("commit", "")), run["name"]
        assert prov.get("data") and prov.get("recorded"), run["name"]
        machine = prov.get("machine", {})
        if m["device_name"].startswith("cuda"):
            assert prov.get("gpu") or machine.get("gpu"), run["name"]
        else:
            assert machine.get("cpu") and machine.get("cpu_cores"), run["name"]
        assert m["command"].startswith("python -m resnet_nb.train"), run["name"]
        assert m["torch"] and m["device_name"] and 0 < m["test_acc"] <= 1
        assert [row["epoch"] for row in history] == list(range(1, m["epochs"] + 1))
        vals = [row["val_acc"] for row in history if row["val_acc"] is not None]
        assert m["best_val_acc"] == (max(vals) if vals else None), run["name"]
        assert m["wall_time_s"] >= history[-1]["wall_time_s"]


def test_time_to_accuracy_script_reads_a_recorded_run() -> None:
    runs = sorted(p.name for p in REFERENCE.iterdir() if (p / "metrics.json").is_file())
    run = REFERENCE / runs[0]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "time_to_accuracy.py"), "--run", str(run),
         "--target", "0.5", "0.999"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "validation accuracy 50.00% first reached at epoch" in proc.stdout
    assert "validation accuracy 99.90% not reached" in proc.stdout
