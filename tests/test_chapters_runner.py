"""The chapter runner (python -m resnet_nb.chapters run): parameter names, errors, exit codes.

A tiny notebook written in tmp_path stands in for a chapter, so each run takes a
kernel start (a few seconds), not a chapter's training.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("papermill")
pytest.importorskip("ipykernel")

from resnet_nb.chapters import chapter_parameters, check_parameter_names, main  # noqa: E402
from resnet_nb.params import ParameterError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

PARAMETERS = """\
epochs = 2  # passes over the data: e.g. 2 (quick) or 40 (full)
batch_size = 128
lr = 0.1  # peak rate; schedule="onecycle" uses it as max_lr
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A chapter-like notebook: a parameters cell, a check cell, a cell that can fail."""
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    nb = new_notebook(
        cells=[
            new_markdown_cell("# A tiny chapter"),
            new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
            new_code_cell(
                "from resnet_nb.params import check_positive_int\n"
                "check_positive_int('epochs', epochs)\n"
                "check_positive_int('batch_size', batch_size)"
            ),
            new_code_cell("if lr == 5:\n    raise RuntimeError('the rate 5 is too high')"),
            new_code_cell("print('trained for', epochs, 'epochs')"),
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "99_tiny.ipynb"
    nbformat.write(nb, str(path))
    return path


@pytest.fixture(autouse=True)
def _kernel_sees_this_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chapter's kernel imports resnet_nb from this checkout."""
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), path) if p))


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert "Traceback" not in err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_parameter_names_are_read_from_the_parameters_cell(tiny: Path) -> None:
    assert chapter_parameters(tiny) == {"epochs": 2, "batch_size": 128, "lr": 0.1}
    check_parameter_names(tiny, {"epochs": 3, "lr": 0.5})
    with pytest.raises(ParameterError, match=r"'btach_size' .*did you mean 'batch_size'\?"):
        check_parameter_names(tiny, {"btach_size": 3})
    with pytest.raises(ParameterError, match=r"'zzz' \(profiles/full.yaml\).*valid names: epochs, batch_size, lr"):
        check_parameter_names(tiny, {"zzz": 3}, where=" (profiles/full.yaml)")


def test_every_profile_names_only_real_parameters_of_each_chapter() -> None:
    from resnet_nb.chapters import load_profile, profile_names

    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for name in profile_names():
            check_parameter_names(nb, load_profile(name, nb.stem), where=f" (profiles/{name}.yaml)")


def test_mistyped_parameter_is_an_error_before_anything_runs(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.ipynb"
    assert main(["run", str(tiny), "-o", str(out), "-p", "epoch", "3"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line == "error: parameter 'epoch' is not a parameter of 99_tiny: did you mean 'epochs'?"
    assert not out.exists(), "nothing may run when a name is wrong"


def test_notebook_without_parameters_cell_takes_no_parameters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nbformat.v4 import new_code_cell, new_notebook

    path = tmp_path / "98_plain.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1")]), str(path))
    assert main(["run", str(path), "-o", str(tmp_path / "o.ipynb"), "-p", "x", "2"]) == 2
    assert "has no cell tagged 'parameters'" in _one_line(capsys.readouterr().err)


def test_bad_value_refused_inside_the_chapter_is_one_line_exit_2(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.ipynb"
    assert main(["run", str(tiny), "-o", str(out), "-p", "epochs", "0"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line == "error: parameter epochs=0 is invalid: it must be a positive integer, e.g. 128"


def test_other_failure_names_the_cell_and_the_saved_notebook(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(tiny), "-o", "runs/failed.ipynb", "-p", "lr", "5"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line == (
        "error: 99_tiny.ipynb failed in cell In [4]: RuntimeError: the rate 5 is too high; "
        f"the executed notebook, with the traceback, is at {Path('runs/failed.ipynb')}"
    )
    saved = nbformat.read(str(tmp_path / "runs" / "failed.ipynb"), as_version=4)
    assert any(o.get("ename") == "RuntimeError" for c in saved.cells for o in c.get("outputs", []))


def test_good_run_writes_the_notebook_with_the_parameters(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "good.ipynb"
    assert main(["run", str(tiny), "-o", str(out), "-p", "epochs", "3"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    saved = nbformat.read(str(out), as_version=4)
    printed = "".join(o.get("text", "") for c in saved.cells for o in c.get("outputs", []))
    assert "trained for 3 epochs" in printed


def test_command_line_stderr_is_one_line(tiny: Path, tmp_path: Path) -> None:
    """The real command: nothing from papermill or the kernel beside the error line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "resnet_nb.chapters", "run", str(tiny), "-o",
         str(tmp_path / "o.ipynb"), "-p", "batch_size", "-1"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert _one_line(result.stderr) == (
        "error: parameter batch_size=-1 is invalid: it must be a positive integer, e.g. 128"
    )
