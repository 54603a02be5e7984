"""Run the book's chapters: refresh their committed outputs, or batch-run one with a profile.

Two uses, one module::

    # developers: pair each .py with its .ipynb and re-run it in place (make notebooks)
    python -m resnet_nb.chapters execute notebooks/01_residual_block.py ...

    # anyone: run a chapter with a parameter profile through papermill
    python -m resnet_nb.chapters run notebooks/03_training.ipynb --profile full -o out.ipynb

A profile is ``profiles/<name>.yaml``: one mapping of parameters per chapter, keyed by the
chapter's file stem (``03_training``), plus a ``train`` section for ``python -m
resnet_nb.train``. ``quick`` holds each chapter's defaults (CPU-sized); ``full`` is sized
for a GPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from resnet_nb.params import ParameterError

__all__ = ["PROFILES_DIR", "load_profile", "profile_names", "execute_in_place", "run_chapter", "main"]

PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"


def profile_names(directory: Path = PROFILES_DIR) -> list[str]:
    """Names of the available profiles (the ``*.yaml`` files in ``profiles/``)."""
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load_profile(name: str, section: str, directory: Path = PROFILES_DIR) -> dict[str, Any]:
    """The parameters of ``section`` (a chapter stem or ``train``) in profile ``name``."""
    import yaml

    path = directory / f"{name}.yaml"
    if not path.exists():
        names = ", ".join(profile_names(directory)) or "none found"
        raise ParameterError(f"parameter profile={name!r} is invalid: choose one of {names} (in {directory})")
    data = yaml.safe_load(path.read_text()) or {}
    values = data.get(section) or {}
    if not isinstance(values, dict):
        raise ParameterError(f"{path}: section {section!r} must be a mapping of parameter names to values")
    return dict(values)


def execute_in_place(py: Path, timeout: int = 1800) -> float:
    """Write ``py``'s paired .ipynb from its cells, run it in a fresh kernel, save outputs.

    Returns the wall time in seconds. The kernel runs in the notebook's folder, as nbval
    and the book build do.
    """
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    py = Path(py)
    nb_path = py.with_suffix(".ipynb")
    nb = jupytext.read(py)
    started = time.perf_counter()
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", record_timing=False, resources={"metadata": {"path": str(py.parent)}}
    ).execute()
    nbformat.write(nb, nb_path)
    # jupytext reads inputs from the .py: keep it the newer file of the pair.
    py.touch()
    return time.perf_counter() - started


def run_chapter(
    notebook: Path, output: Path, profile: str = "quick", overrides: dict[str, Any] | None = None
) -> None:
    """Run ``notebook`` with papermill, its parameters from ``profile`` plus ``overrides``."""
    import papermill

    notebook = Path(notebook)
    if notebook.suffix == ".py":
        notebook = notebook.with_suffix(".ipynb")
    if not notebook.exists():
        raise ParameterError(f"no chapter at {notebook}: pass a notebooks/NN_topic.ipynb file")
    params = load_profile(profile, notebook.stem)
    params.update(overrides or {})
    print(f"{notebook.name}: profile {profile!r}, parameters {params}")
    papermill.execute_notebook(
        str(notebook), str(output), parameters=params, cwd=str(notebook.parent), kernel_name="python3"
    )


def _parse_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resnet_nb.chapters", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("execute", help="refresh chapters' .ipynb outputs in place")
    ex.add_argument("chapters", nargs="+", type=Path, help="notebooks/NN_topic.py files")
    run = sub.add_parser("run", help="run one chapter with a parameter profile (papermill)")
    run.add_argument("notebook", type=Path)
    run.add_argument("--profile", default="quick", help="a profile in profiles/ (default: quick)")
    run.add_argument("-o", "--output", type=Path, help="executed copy (default: runs/<stem>-<profile>.ipynb)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = parser.parse_args(argv)

    try:
        if args.command == "execute":
            for py in args.chapters:
                print(f"{py}: ran in {execute_in_place(py):.0f} s", flush=True)
        else:
            output = args.output or Path("runs") / f"{args.notebook.stem}-{args.profile}.ipynb"
            output.parent.mkdir(parents=True, exist_ok=True)
            overrides = {name: _parse_value(value) for name, value in args.parameter}
            run_chapter(args.notebook, output, args.profile, overrides)
            print(f"wrote {output}")
    except ParameterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
