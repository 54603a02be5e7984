"""Run the book's chapters: refresh their committed outputs, or batch-run one with a profile.

Two uses, one module::

    # developers: pair each .py with its .ipynb and re-run it in place (make notebooks)
    python -m resnet_nb.chapters execute notebooks/01_residual_block.py ...

    # anyone: run a chapter with a parameter profile through papermill
    python -m resnet_nb.chapters run notebooks/03_training.ipynb --profile full -o out.ipynb

A profile is ``resnet_nb/profiles/<name>.yaml`` (see :mod:`resnet_nb.profiles`): one
mapping of parameters per chapter, keyed by the chapter's file stem (``03_training``),
plus a ``train`` section for ``python -m resnet_nb.train``. ``quick`` holds each
chapter's defaults (CPU-sized); ``full`` is sized for a GPU.

``run`` checks every parameter name (from the profile and from ``-p``) against the
chapter's ``parameters`` cell before it starts, so a typo stops it with the closest
valid names instead of a run at the defaults. Exit codes: 0 done; 2 a mistake to
fix (a bad name or value, missing data: one line ``error: ...``); 1 the chapter
failed otherwise (one line naming the cell and where the executed notebook is).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from resnet_nb import errors
from resnet_nb.params import ParameterError
from resnet_nb.profiles import PROFILES_DIR, load_profile, profile_names

__all__ = [
    "PROFILES_DIR",
    "ChapterFailed",
    "chapter_parameters",
    "check_parameter_names",
    "load_profile",
    "profile_names",
    "execute_in_place",
    "run_chapter",
    "main",
]

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


class ChapterFailed(Exception):
    """A chapter stopped with an error that is not the reader's mistake; the message says where."""


def chapter_parameters(notebook: Path) -> dict[str, Any]:
    """The names and literal defaults assigned in ``notebook``'s cell tagged ``parameters``.

    The cell is read with Python's own parser (papermill's line-based
    ``inspect_notebook`` misreads comments holding ``=`` or ``:``); a default that
    is not a literal is given as None. Raises ParameterError when the notebook has
    no such cell.
    """
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise ParameterError(
            f"{notebook.name} has no cell tagged 'parameters', so it takes no parameters: "
            "run it without -p"
        )
    values: dict[str, Any] = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        try:
            default = ast.literal_eval(value)
        except ValueError:
            default = None
        for name in names:
            values[name] = default if len(names) == 1 else None
    return values


def check_parameter_names(notebook: Path, params: dict[str, Any], where: str = "") -> None:
    """Raise ParameterError for a name in ``params`` that ``notebook`` does not define.

    papermill itself only warns about such a name and runs the chapter with its
    defaults; here the run stops first, naming the closest valid names.
    """
    valid = list(chapter_parameters(notebook))
    for name in params:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
            hint = (
                f"did you mean {' or '.join(map(repr, close))}?"
                if close
                else f"valid names: {', '.join(valid)}"
            )
            raise ParameterError(
                f"parameter {name!r}{where} is not a parameter of {notebook.stem}: {hint}"
            )


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it lies below it."""
    try:
        return str(Path(path).absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_chapter(
    notebook: Path, output: Path, profile: str = "quick", overrides: dict[str, Any] | None = None
) -> None:
    """Run ``notebook`` with papermill, its parameters from ``profile`` plus ``overrides``.

    Every parameter name is checked against the chapter's ``parameters`` cell
    before anything runs (ParameterError, with the closest valid names). An error
    of the :mod:`resnet_nb.errors` family raised inside the chapter (a parameter
    value the chapter's check refused, missing data) is raised again as itself,
    with the chapter's message; any other failure raises :class:`ChapterFailed`
    naming the cell, the error and where the executed notebook was saved.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook = Path(notebook)
    if notebook.suffix == ".py":
        notebook = notebook.with_suffix(".ipynb")
    if not notebook.exists():
        raise ParameterError(f"no chapter at {notebook}: pass a notebooks/NN_topic.ipynb file")
    params = load_profile(profile, notebook.stem)
    check_parameter_names(notebook, params, where=f" (profiles/{profile}.yaml)")
    check_parameter_names(notebook, overrides or {})
    params.update(overrides or {})
    print(f"{notebook.name}: profile {profile!r}, parameters {params}", flush=True)
    # papermill's own warnings (its line parser misreads comments in the parameters
    # cell; names are checked above instead) would land on stderr: errors only.
    log = logging.getLogger("papermill")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=params,
            cwd=str(notebook.parent),
            kernel_name="python3",
            progress_bar=False,
            # The kernel's own log lines (ipykernel's note on TCP transport, its
            # "KeyboardInterrupt caught in kernel" when shut down while busy) would land
            # on this command's stderr; the chapter's errors come back through papermill.
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
        )
    except PapermillExecutionError as exc:
        family = getattr(errors, exc.ename, None)
        if isinstance(family, type) and issubclass(family, errors.ResnetNbError):
            raise family(exc.evalue) from None
        cell = f"cell In [{exc.exec_count}]" if exc.exec_count else f"cell {exc.cell_index}"
        raise ChapterFailed(
            f"{notebook.name} failed in {cell}: {exc.ename}: {exc.evalue}; the executed "
            f"notebook, with the traceback, is at {_shown(output)}"
        ) from None
    finally:
        log.setLevel(level)


def _parse_value(name: str, text: str) -> Any:
    """A ``-p NAME VALUE`` value read as YAML: 3 -> int, 0.1 -> float, true -> bool, abc -> str."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise ParameterError(
            f"parameter {name}={text!r} is invalid: not a YAML value; quote strings, e.g. "
            f"-p {name} \"'...'\""
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resnet_nb.chapters", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("execute", help="refresh chapters' .ipynb outputs in place")
    ex.add_argument("chapters", nargs="+", type=Path, help="notebooks/NN_topic.py files")
    run = sub.add_parser("run", help="run one chapter with a parameter profile (papermill)")
    run.add_argument("notebook", type=Path)
    run.add_argument("--profile", default="quick", help="a profile in resnet_nb/profiles/ (default: quick)")
    run.add_argument("-o", "--output", type=Path, help="executed copy (default: runs/<stem>-<profile>.ipynb)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = parser.parse_args(argv)

    try:
        if args.command == "execute":
            for py in args.chapters:
                print(f"{py}: ran in {execute_in_place(py):.0f} s", flush=True)
        else:
            output = args.output or Path("runs") / f"{args.notebook.stem}-{args.profile}.ipynb"
            overrides = {name: _parse_value(name, value) for name, value in args.parameter}
            if output.parent != Path(""):
                output.parent.mkdir(parents=True, exist_ok=True)
            run_chapter(args.notebook, output, args.profile, overrides)
            print(f"wrote {_shown(output)}")
    except errors.ResnetNbError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ChapterFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
