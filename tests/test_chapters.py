"""Profiles and the chapter runner (resnet_nb.chapters)."""

from __future__ import annotations

import ast
from pathlib import Path

import jupytext
import pytest
import yaml

from resnet_nb.chapters import load_profile, main, profile_names
from resnet_nb.params import ParameterError

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def chapter_defaults(py: Path) -> dict[str, object]:
    """The literal values assigned in a chapter's `parameters` cell."""
    nb = jupytext.read(py)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    values = {}
    for node in ast.parse(cell.source).body:
        assert isinstance(node, ast.Assign), f"{py.name}: parameters cell holds assignments only"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def test_profiles_exist() -> None:
    assert {"quick", "full"} <= set(profile_names())


@pytest.mark.parametrize("py", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_profiles_name_real_parameters(py: Path) -> None:
    defaults = chapter_defaults(py)
    for name in profile_names():
        unknown = set(load_profile(name, py.stem)) - set(defaults)
        assert not unknown, f"resnet_nb/profiles/{name}.yaml sets {sorted(unknown)}, not parameters of {py.stem}"


@pytest.mark.parametrize("py", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_quick_profile_is_the_chapter_defaults(py: Path) -> None:
    defaults = chapter_defaults(py)
    quick = load_profile("quick", py.stem)
    assert {k: defaults[k] for k in quick} == quick, f"resnet_nb/profiles/quick.yaml disagrees with {py.stem}"


def test_every_chapter_has_a_section_in_each_profile() -> None:
    for name in profile_names():
        data = yaml.safe_load((ROOT / "resnet_nb" / "profiles" / f"{name}.yaml").read_text())
        missing = [py.stem for py in CHAPTERS if py.stem not in data]
        assert not missing, f"resnet_nb/profiles/{name}.yaml has no section for {missing}"


def test_unknown_profile_is_a_clear_error() -> None:
    with pytest.raises(ParameterError, match=r"profile='gpu'.*choose one of .*full.*quick"):
        load_profile("gpu", "01_residual_block")


def test_cli_reports_bad_input_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "notebooks/99_missing.ipynb"]) == 2
    assert "no chapter at notebooks/99_missing.ipynb" in capsys.readouterr().err
    assert main(["run", str(CHAPTERS[0].with_suffix(".ipynb")), "--profile", "gpu"]) == 2
    assert "profile='gpu'" in capsys.readouterr().err
