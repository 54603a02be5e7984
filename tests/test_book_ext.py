"""The book's Sphinx extension (book/_ext/book_html.py), without building the book:
the run-time table read from the chapters' provenance, and the notebooks zip."""

from __future__ import annotations

import importlib.util
import json
import re
import zipfile
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

_spec = importlib.util.spec_from_file_location("book_html", ROOT / "book" / "_ext" / "book_html.py")
ext = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ext)  # type: ignore[union-attr]


def _printed_wall_time(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    text = "".join(o.get("text", "") for o in last.outputs if o.output_type == "stream")
    return float(re.search(r"^wall_time_s\s+([\d.]+)$", text, re.M).group(1))


def test_runtimes_come_from_each_chapter() -> None:
    rows = ext.chapter_runtimes(ROOT)
    assert [r["file"] for r in rows] == [p.name for p in CHAPTERS]
    for row, path in zip(rows, CHAPTERS):
        assert row["wall_time_s"] == _printed_wall_time(path)
        assert row["title"] and row["title"] != "?"
        assert row["device"] != "?"


def test_runtimes_follow_a_changed_notebook(tmp_path: Path) -> None:
    """Change the recorded wall time of a chapter: the table changes with it."""
    (tmp_path / "notebooks").mkdir()
    nb = nbformat.read(CHAPTERS[0], as_version=4)
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    for out in last.outputs:
        if out.output_type == "stream":
            out.text = re.sub(r"wall_time_s\s+[\d.]+", "wall_time_s  1234.5", out.text)
    nbformat.write(nb, tmp_path / "notebooks" / CHAPTERS[0].name)
    (row,) = ext.chapter_runtimes(tmp_path)
    assert row["wall_time_s"] == 1234.5
    assert ext.format_duration(1234.5) == "20 min 34 s"


def test_chapter_without_provenance_fails(tmp_path: Path) -> None:
    (tmp_path / "notebooks").mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nbformat.write(nb, tmp_path / "notebooks" / "01_x.ipynb")
    with pytest.raises(ValueError, match="provenance"):
        ext.chapter_runtimes(tmp_path)


def test_notebooks_zip(tmp_path: Path) -> None:
    target = ext.write_notebooks_zip(ROOT, tmp_path / ext.ZIP_NAME)
    names = zipfile.ZipFile(target).namelist()
    for path in CHAPTERS:
        assert f"resnet-nb/notebooks/{path.name}" in names
        assert f"resnet-nb/notebooks/{path.stem}.py" in names
    assert {"resnet-nb/README.md", "resnet-nb/pyproject.toml",
            "resnet-nb/resnet_nb/__init__.py", "resnet-nb/resnet_nb/models.py"} <= set(names)
    assert not [n for n in names if "__pycache__" in n]
    again = ext.write_notebooks_zip(ROOT, tmp_path / "again.zip")
    assert again.read_bytes() == target.read_bytes(), "the zip must be reproducible"


def test_intro_uses_the_directives() -> None:
    intro = (ROOT / "book" / "intro.md").read_text()
    assert "```{chapter-runtimes}" in intro and "```{notebooks-download}" in intro
    assert "few minutes" not in intro
    json.dumps(ext.chapter_runtimes(ROOT))  # plain data


def test_reference_runs_table_reads_every_recorded_run() -> None:
    rows = ext.recorded_runs(ROOT)
    folders = sorted(p.name for p in (ROOT / ext.REFERENCE_DIR).iterdir()
                     if (p / "metrics.json").is_file())
    assert [r["name"] for r in rows] == folders
    for row in rows:
        metrics = json.loads((ROOT / ext.REFERENCE_DIR / row["name"] / "metrics.json").read_text())
        assert row["test_acc"] == metrics["test_acc"] and row["command"] == metrics["command"]
        assert row["commit"] != "?", f"{row['name']} has no commit in its provenance.json"
    kept = [r for r in rows if r["weights"] != "not kept"]
    assert kept and all("sha256" in r["weights"] for r in kept)
    page = (ROOT / "book" / "reference_runs.md").read_text()
    assert "```{reference-runs}" in page


def test_reference_runs_table_lists_every_recorded_sweep() -> None:
    rows = ext.recorded_sweeps(ROOT)
    folders = sorted(p.name for p in (ROOT / ext.REFERENCE_DIR).iterdir()
                     if (p / "sweep.json").is_file())
    assert folders and [r["name"] for r in rows] == folders
    for row in rows:
        results = json.loads((ROOT / ext.REFERENCE_DIR / row["name"] / "results.json").read_text())
        assert row["wall_time_s"] == pytest.approx(sum(c["wall_time_s"] for c in results), abs=0.1)
        assert row["commit"] != "?" and "python -m resnet_nb.sweep" in row["command"]
