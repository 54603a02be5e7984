"""Recorded runs: a finished run kept with its weights, loaded back by name, checked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from resnet_nb.cli import main as train_main
from resnet_nb.engine import predict_logits, synthetic_data
from resnet_nb.errors import (
    CheckpointError,
    ParameterError,
    RunFolderError,
    WeightsNotFoundError,
)
from resnet_nb.runs import (
    PROVENANCE,
    REFERENCE_RUNS,
    WEIGHTS,
    check_reference,
    load_reference,
    main,
    record,
    sha256_file,
)
from resnet_nb.state import load_checkpoint

DATA = os.environ.get("RESNET_NB_DATA")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert train_main([
        "--dataset", "synthetic", "--model", "resnet20", "--train-limit", "128",
        "--val-size", "32", "--batch-size", "64", "--epochs", "1", "--lr", "0.1",
        "--device", "cpu", "--precision", "fp32", "--out", str(out), "--no-progress",
    ]) == 0
    return out


@pytest.fixture
def recorded(finished: Path, tmp_path: Path) -> Path:
    record(finished, tmp_path / "tiny-run", note="a test run")
    return tmp_path


def test_record_keeps_weights_only_and_their_checksum(finished: Path, recorded: Path) -> None:
    folder = recorded / "tiny-run"
    assert sorted(p.name for p in folder.iterdir()) == [
        "history.json", "metrics.json", PROVENANCE, WEIGHTS]
    prov = json.loads((folder / PROVENANCE).read_text())
    assert prov["weights"]["sha256"] == sha256_file(folder / WEIGHTS)
    assert prov["weights"]["dtype"] == "float32"
    assert prov["note"] == "a test run"
    stored = torch.load(folder / WEIGHTS, weights_only=True)
    saved = load_checkpoint(finished / "checkpoint.pt")
    assert set(stored) == set(saved["model"])  # a state dict: no optimiser, no history
    assert prov["weights"]["mean"] == pytest.approx(saved["stats"]["mean"])


def test_loaded_by_name_predicts_as_the_trained_network(finished: Path, recorded: Path) -> None:
    from resnet_nb.models import build_model

    source = load_reference("tiny-run", root=recorded)
    saved = load_checkpoint(finished / "checkpoint.pt")
    trained = build_model("resnet20", num_classes=len(saved["classes"]))
    trained.load_state_dict(saved["model"])
    images = synthetic_data(64, seed=3).images
    stats = {"mean": saved["stats"]["mean"], "std": saved["stats"]["std"]}
    expected = predict_logits(trained, images, precision="fp32", **stats)
    got = predict_logits(source.model, images, mean=source.mean, std=source.std,
                         precision="fp32")
    torch.testing.assert_close(got, expected)
    assert "tiny-run" in source.description and not source.model.training


def test_large_weights_are_stored_in_float16_and_still_agree(
    finished: Path, tmp_path: Path
) -> None:
    record(finished, tmp_path / "half", max_weights_bytes=1000)
    prov = json.loads((tmp_path / "half" / PROVENANCE).read_text())
    assert prov["weights"]["dtype"] == "float16"
    stored = torch.load(tmp_path / "half" / WEIGHTS, weights_only=True)
    assert stored["conv1.weight"].dtype == torch.float16
    half = load_reference("half", root=tmp_path)
    assert half.model.conv1.weight.dtype == torch.float32  # loaded back in float32
    images = synthetic_data(64, seed=3).images
    saved = load_checkpoint(finished / "checkpoint.pt")
    from resnet_nb.models import build_model

    trained = build_model("resnet20", num_classes=len(saved["classes"]))
    trained.load_state_dict(saved["model"])
    a = predict_logits(trained, images, mean=half.mean, std=half.std, precision="fp32")
    b = predict_logits(half.model, images, mean=half.mean, std=half.std, precision="fp32")
    assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.95


def test_altered_weights_are_refused_naming_the_run_and_the_fix(recorded: Path) -> None:
    file = recorded / "tiny-run" / WEIGHTS
    data = bytearray(file.read_bytes())
    data[-100] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"'tiny-run'.*altered or damaged.*git checkout"):
        load_reference("tiny-run", root=recorded)


def test_missing_weights_and_unknown_names_say_what_exists(recorded: Path) -> None:
    with pytest.raises(ParameterError, match=r"'tiny-rn'.*recorded runs: tiny-run"):
        load_reference("tiny-rn", root=recorded)
    (recorded / "tiny-run" / WEIGHTS).unlink()
    with pytest.raises(WeightsNotFoundError, match=r"'tiny-run' has no weights.pt.*restore"):
        load_reference("tiny-run", root=recorded)


def test_a_run_recorded_without_weights_says_so_when_loaded(
    finished: Path, tmp_path: Path
) -> None:
    record(finished, tmp_path / "light", keep_weights=False)
    assert not (tmp_path / "light" / WEIGHTS).exists()
    with pytest.raises(WeightsNotFoundError, match=r"'light' keeps no weights"):
        load_reference("light", root=tmp_path)


def test_record_never_overwrites(finished: Path, recorded: Path) -> None:
    before = sha256_file(recorded / "tiny-run" / WEIGHTS)
    with pytest.raises(RunFolderError, match="already exists"):
        record(finished, recorded / "tiny-run")
    assert sha256_file(recorded / "tiny-run" / WEIGHTS) == before


def test_command_line_errors_are_one_line(
    recorded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "nothing-here", "--root", str(recorded)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "nothing-here" in err[0]


def _recorded_with_weights() -> list[str]:
    if not REFERENCE_RUNS.is_dir():
        return []
    return sorted(
        p.name for p in REFERENCE_RUNS.iterdir()
        if (p / PROVENANCE).is_file() and json.loads((p / PROVENANCE).read_text()).get("weights")
    )


@pytest.mark.slow
@pytest.mark.skipif(DATA is None, reason="needs RESNET_NB_DATA (CI sets it)")
@pytest.mark.parametrize("name", _recorded_with_weights())
def test_stored_weights_reproduce_the_recorded_test_accuracy(name: str) -> None:
    result = check_reference(name)
    assert result["n"] == 10_000
    assert abs(result["measured"] - result["recorded"]) <= 0.001, result


def test_every_recorded_weights_file_matches_its_checksum() -> None:
    names = _recorded_with_weights()
    assert names, f"no recorded run with weights under {REFERENCE_RUNS}"
    for name in names:
        prov = json.loads((REFERENCE_RUNS / name / PROVENANCE).read_text())
        file = REFERENCE_RUNS / name / prov["weights"]["file"]
        assert file.stat().st_size < 5 * 1024 * 1024, name
        assert sha256_file(file) == prov["weights"]["sha256"], name
