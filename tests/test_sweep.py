"""Fine-tuning sweeps: every cell saved as measured, resumed exactly, summarised, recorded."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch
from PIL import Image

from resnet_nb import runs
from resnet_nb.engine import fit, synthetic_data
from resnet_nb.errors import ParameterError, RunFolderError
from resnet_nb.sweep import (
    RESULTS,
    SWEEP,
    SweepConfig,
    clear_leads,
    epochs_for_budget,
    leaders,
    load_sweep,
    main,
    run_sweep,
    summarise,
)
from resnet_nb.train import TrainConfig


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sweep-source")
    fit(TrainConfig(model="resnet20", dataset="synthetic", epochs=1, batch_size=64,
                    precision="fp32", out=str(out)),
        train=synthetic_data(128, seed=3), val=None, test=None, progress=False)
    return out / "checkpoint.pt"


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image-folder target: 3 classes of 10 small coloured images with noise."""
    root = tmp_path_factory.mktemp("pictures")
    g = torch.Generator().manual_seed(0)
    for c, colour in enumerate(((200, 30, 30), (30, 200, 30), (30, 30, 200))):
        (root / f"class{c}").mkdir()
        for i in range(10):
            noise = torch.randint(-40, 40, (32, 32, 3), generator=g)
            pixels = (torch.tensor(colour) + noise).clamp(0, 255).to(torch.uint8)
            Image.fromarray(pixels.numpy()).save(root / f"class{c}" / f"{i}.png")
    return root


def _config(checkpoint: Path, pictures: Path, /, **changes: object) -> SweepConfig:
    values = dict(source="checkpoint", checkpoint=str(checkpoint), target="folder",
                  target_folder=str(pictures), strategies=["linear_probe", "full"],
                  budgets=[2, 4], seeds=[0, 1], train_images=24, batch_size=8,
                  precision="fp32", device="cpu")
    values.update(changes)
    return SweepConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def finished(source: Path, pictures: Path, tmp_path_factory: pytest.TempPathFactory,
             ) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("sweeps") / "grid"
    cells = run_sweep(_config(source, pictures), out, command="python -m resnet_nb.sweep",
                      say=None)
    return out, cells


def test_every_cell_is_measured_and_saved(finished: tuple[Path, list[dict]]) -> None:
    out, cells = finished
    assert [(c["seed"], c["labels_per_class"], c["strategy"]) for c in cells] == [
        (s, k, st) for s in (0, 1) for k in (2, 4) for st in ("linear_probe", "full")]
    assert json.loads((out / RESULTS).read_text()) == cells
    info = json.loads((out / SWEEP).read_text())
    assert info["finished"] and info["test_images"] == 6 and info["classes"] == [
        "class0", "class1", "class2"]
    assert {c["test_images"] for c in cells} == {6}
    # 24 images per run: 4 epochs of 2 per class, 2 epochs of 4 per class
    assert {(c["labels_per_class"], c["epochs"], c["train_images"]) for c in cells} == {
        (2, 4, 6), (4, 2, 12)}
    assert all(0 <= c["test_acc"] <= 1 for c in cells)


def test_a_resumed_sweep_measures_only_the_missing_cells_and_gets_the_same_numbers(
    finished: tuple[Path, list[dict]], source: Path, pictures: Path, tmp_path: Path
) -> None:
    out, cells = finished
    copy = tmp_path / "grid"
    copy.mkdir()
    (copy / SWEEP).write_text((out / SWEEP).read_text())
    (copy / RESULTS).write_text(json.dumps(cells[:5]))  # killed after five cells
    lines: list[str] = []
    again = run_sweep(_config(source, pictures), copy, resume=True, say=lines.append)
    assert lines[0].startswith("resuming") and "5 of 8 cells" in lines[0]
    assert len(lines) == 1 + 3
    assert [c["test_acc"] for c in again] == [c["test_acc"] for c in cells]


def test_a_sweep_folder_is_never_overwritten_by_mistake(
    finished: tuple[Path, list[dict]], source: Path, pictures: Path, tmp_path: Path
) -> None:
    out, _ = finished
    before = (out / RESULTS).read_text()
    with pytest.raises(RunFolderError, match="already holds a sweep.*--resume.*--overwrite"):
        run_sweep(_config(source, pictures), out, say=None)
    with pytest.raises(ParameterError, match=r"budgets: \[2, 4\] -> \[2, 3\]"):
        run_sweep(_config(source, pictures, budgets=[2, 3]), out, resume=True, say=None)
    assert (out / RESULTS).read_text() == before
    with pytest.raises(RunFolderError, match="no sweep to resume"):
        run_sweep(_config(source, pictures), tmp_path / "new", resume=True, say=None)


@pytest.mark.parametrize(("changes", "message"), [
    ({"budgets": []}, "budgets"),
    ({"budgets": [2, 2]}, "budgets"),
    ({"seeds": [-1]}, "seeds"),
    ({"strategies": ["full", "bogus"]}, "strategies"),
    ({"lrs": {"full": 0.1}}, "no peak rate for linear_probe"),
    ({"lr_decay": 0.0}, "lr_decay"),
    ({"test_images": 0}, "test_images"),
    ({"source": "checkpoint", "checkpoint": None}, "checkpoint"),
    ({"source": "recorded", "reference_run": "no-such-run"}, "reference_run"),
])
def test_bad_settings_fail_before_any_work(source: Path, pictures: Path, tmp_path: Path,
                                           changes: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        run_sweep(_config(source, pictures, **changes), tmp_path / "x", say=None)
    assert not (tmp_path / "x").exists()


def test_budgets_larger_than_the_smallest_class_are_refused(source: Path, pictures: Path,
                                                            tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match=r"smallest class .* has \d+ images"):
        run_sweep(_config(source, pictures, budgets=[50]), tmp_path / "x", say=None)


def test_command_line_errors_are_one_line(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    out = str(tmp_path / "s")
    assert main(["--test-images", "many", "--out", out]) == 2
    assert main(["--strategies", "full", "nope", "--out", out]) == 2
    assert main(["--source", "checkpoint", "--checkpoint", str(tmp_path / "none.pt"),
                 "--out", out]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(errors) == 3 and all(line.startswith("error: ") for line in errors), errors
    assert "'many'" in errors[0] and "'nope'" in errors[1] and "none.pt" in errors[2]


def test_summary_and_clear_leads() -> None:
    def cells(strategy: str, k: int, accs: list[float]) -> list[dict]:
        return [{"strategy": strategy, "labels_per_class": k, "seed": s, "test_acc": a,
                 "test_images": 10_000} for s, a in enumerate(accs)]

    summary = summarise(cells("a", 10, [0.80, 0.82, 0.84]) + cells("b", 10, [0.70, 0.71, 0.72])
                        + cells("a", 100, [0.80, 0.85, 0.90]) + cells("b", 100, [0.78, 0.80,
                                                                                  0.82]))
    a10 = summary["a", 10]
    assert a10["n"] == 3 and a10["mean"] == pytest.approx(0.82)
    assert a10["sd"] == pytest.approx(statistics.stdev([0.80, 0.82, 0.84]))
    assert a10["test_se"] == pytest.approx((0.82 * 0.18 / 10_000) ** 0.5)
    assert clear_leads(summary, 10) == ("a", "b", True)
    # 0.85 - 0.05 = 0.80 does not clear 0.80 + 0.02: the intervals overlap
    assert clear_leads(summary, 100) == ("a", "b", False)
    assert leaders(summary, 10) == ["a"] and leaders(summary, 100) == ["a", "b"]
    one_seed = summarise(cells("a", 5, [0.9]) + cells("b", 5, [0.1]))
    assert one_seed["a", 5]["sd"] is None and clear_leads(one_seed, 5)[2] is False
    assert leaders(one_seed, 5) == ["a", "b"]
    assert epochs_for_budget(3000, 10, 10) == 30 and epochs_for_budget(3000, 500, 10) == 1


def test_a_finished_sweep_is_recorded_and_cannot_be_loaded_as_a_network(
    finished: tuple[Path, list[dict]], source: Path, tmp_path: Path
) -> None:
    out, cells = finished
    dest = runs.record(out, tmp_path / "ref" / "grid", data_file=[source], note="a test")
    provenance = json.loads((dest / runs.PROVENANCE).read_text())
    assert provenance["kind"] == "sweep" and provenance["cells"] == len(cells)
    assert provenance["data"]["files"][0]["sha256"] == runs.sha256_file(source)
    assert provenance["wall_time_s"] == pytest.approx(sum(c["wall_time_s"] for c in cells),
                                                      abs=0.1)
    assert load_sweep(dest)["results"] == cells
    assert runs.recorded_names(tmp_path / "ref") == ["grid"]
    with pytest.raises(ParameterError, match="fine-tuning sweep"):
        runs.load_reference("grid", root=tmp_path / "ref")


def test_an_unfinished_sweep_is_not_recorded(finished: tuple[Path, list[dict]],
                                             tmp_path: Path) -> None:
    out, cells = finished
    half = tmp_path / "half"
    half.mkdir()
    info = json.loads((out / SWEEP).read_text()) | {"finished": False}
    (half / SWEEP).write_text(json.dumps(info))
    (half / RESULTS).write_text(json.dumps(cells[:3]))
    with pytest.raises(RunFolderError, match="3 of 8 cells.*--resume"):
        runs.record(half, tmp_path / "ref" / "half")


def test_budget_chart_draws_a_line_per_strategy_with_its_bars() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from resnet_nb.viz import budget_chart

    fig = budget_chart([10, 100], {"a": [0.5, 0.6], "b": [0.4, 0.7]},
                       spread={"a": [0.01, 0.02], "b": [0.03, 0.04]}, title="t")
    ax = fig.axes[0]
    drawn = {c.get_label(): c for c in ax.containers}
    assert sorted(drawn) == ["a", "b"] and all(c.has_yerr for c in drawn.values())
    a, b = (drawn[name].lines[0] for name in ("a", "b"))
    assert list(b.get_ydata()) == pytest.approx([40.0, 70.0])
    # the two strategies are nudged apart on the log axis so their bars stay visible
    assert a.get_xdata()[0] < 10 < b.get_xdata()[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    plain = budget_chart([10, 100], {"a": [0.5, 0.6]}).axes[0].containers[0]
    assert not plain.has_yerr and list(plain.lines[0].get_xdata()) == [10, 100]
