"""The repository is consistent with itself: notebook pairs, chapter conventions,
the table of contents, and the environment files against the pins."""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IDS = [p.stem for p in CHAPTERS]


def _cells(path: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    nb = jupytext.read(path)
    return [
        (c.cell_type, c.source.strip(), tuple(sorted(c.metadata.get("tags", []))))
        for c in nb.cells
    ]


def test_there_are_chapters() -> None:
    assert CHAPTERS, "no notebooks/NN_topic.py chapters found"


def test_every_chapter_is_a_pair() -> None:
    assert [p.stem for p in CHAPTERS] == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("py", CHAPTERS, ids=IDS)
def test_pair_in_sync(py: Path) -> None:
    """The .ipynb has exactly the cells of the .py (run `make sync` and re-execute)."""
    ours, theirs = _cells(py), _cells(py.with_suffix(".ipynb"))
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a == b, f"{py.name} and its .ipynb differ at cell {i}: regenerate the pair"
    assert len(ours) == len(theirs), f"{py.name}: {len(ours)} cells, .ipynb {len(theirs)}"


@pytest.mark.parametrize("py", CHAPTERS, ids=IDS)
def test_chapter_conventions(py: Path) -> None:
    nb = jupytext.read(py)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one code cell must be tagged `parameters`"
    params_cell = code[tagged[0]]
    assert "import" not in params_cell.source, "the parameters cell holds literals only"
    after = code[tagged[0] + 1].source
    assert "resnet_nb.params" in after or "check_" in after, (
        "the cell after `parameters` must validate them"
    )
    assert "provenance(" in code[-1].source, "the last code cell must print provenance"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and re.search(r"^# \S", first.source, re.M)
    headings = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for section in ("## Summary", "## Exercises"):
        assert section in headings, f"{py.name} lacks a `{section}` section"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_has_outputs(nb_path: Path) -> None:
    """The book renders the committed outputs: every code cell must have been run."""
    nb = jupytext.read(nb_path)
    unrun = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and not c.get("execution_count")]
    assert not unrun, f"{nb_path.name}: code cells {unrun} have no outputs; run `make notebooks`"
    errors = [
        i for i, c in enumerate(nb.cells) if c.cell_type == "code"
        for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors, f"{nb_path.name}: cells {errors} hold error outputs"


def test_toc_lists_every_chapter() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    for py in CHAPTERS:
        assert f"notebooks/{py.stem}" in files, f"{py.stem} is missing from _toc.yml"
    for f in files + [toc["root"]]:
        found = [p for p in (ROOT / f"{f}.md", ROOT / f"{f}.ipynb") if p.exists()]
        assert found, f"_toc.yml names {f}, which does not exist"


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)\s*==\s*([^\s;]+)", line)
        if m:
            pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return pins


def test_environment_yml_agrees_with_pins() -> None:
    """environment.yml pins the same versions as requirements.in / requirements.txt."""
    lock = _pins((ROOT / "requirements.txt").read_text().splitlines())
    top = _pins((ROOT / "requirements.in").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    conda_pins = _pins(pip_section)
    assert any(str(d).startswith("python=3.11") for d in deps), "environment.yml: python=3.11"
    for name, version in top.items():
        assert lock.get(name) == version, f"requirements.txt pins {name}=={lock.get(name)}, .in {version}"
    assert conda_pins, "environment.yml has no pinned pip packages"
    for name, version in conda_pins.items():
        assert lock.get(name) == version, (
            f"environment.yml pins {name}=={version} but requirements.txt has {lock.get(name)}"
        )
    missing = sorted(set(top) - set(conda_pins))
    assert not missing, f"environment.yml lacks the top-level pins {missing}"
    jb = next(line for line in (ROOT / "requirements.in").read_text().splitlines() if line.startswith("jupyter-book"))
    assert "<2" in jb and lock["jupyter-book"].startswith("1."), "Jupyter Book must stay at 1.x"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make book" in readme
    assert re.search(r"^\s*(exec\s+)?make test\b", ci, re.M), ".ci/run must call `make test`"
