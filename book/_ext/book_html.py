"""Local Sphinx fixes for the book's HTML, found by the browser test (tests/test_book.py).

- sphinx-thebe 0.3.1 registers its inline configuration script twice, so every page
  logs "Identifier 'THEBE_JS_URL' has already been declared": keep one copy.
- pydata-sphinx-theme's layout reads a ``default_mode`` template variable that
  sphinx-book-theme never sets, so every page logs "Got invalid theme mode: ." and
  resets to auto: set it to "auto" (follow the reader's system setting).

And additions:

- ``static/book.css``: printed output wraps at the text column instead of scrolling
  sideways (code cells keep their lines to 79 characters instead);
- a chapter's download menu offers its jupytext ``.py`` twin next to the ``.ipynb``,
  copied into ``_sources`` with the build;
- the ``chapter-runtimes`` directive: a table of each chapter's wall time and device,
  read at build time from the provenance cell that ends each chapter's ``.ipynb`` (the
  outputs the book renders), so the figures cannot drift from the chapters;
- the ``reference-runs`` directive: a table of every recorded run under
  ``book/reference_runs`` (model, schedule, device, accuracy, wall time, commit, whether
  its weights are kept), a table of the recorded fine-tuning sweeps, and the command of
  each, read from their ``metrics.json``/``sweep.json`` and ``provenance.json`` at build
  time;
- the ``notebooks-download`` directive and ``resnet-nb-notebooks.zip``: every chapter
  (``.ipynb`` and ``.py``), the package, ``pyproject.toml`` and the README in one zip,
  written into the HTML output at the end of the build.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.application import Sphinx

ZIP_NAME = "resnet-nb-notebooks.zip"
CHAPTER_GLOB = "notebooks/[0-9][0-9]_*.ipynb"


# ------------------------------------------------------------------ chapter run times


def _chapter_title(nb: dict[str, Any]) -> str:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            source = "".join(cell.get("source", ""))
            m = re.search(r"^# (.+)$", source, re.M)
            if m:
                return m.group(1).strip()
    return "?"


def recorded_provenance(path: Path) -> dict[str, str]:
    """The ``key  value`` lines the last code cell of a chapter printed (its provenance).

    ``resnet_nb.report.provenance`` prints one line per field (``wall_time_s  5.5``,
    ``device  cpu: ...``); this reads them back from the committed outputs. Raises
    ValueError when the chapter has no printed ``wall_time_s``.
    """
    nb = json.loads(Path(path).read_text())
    code = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    text = ""
    if code:
        for out in code[-1].get("outputs", []):
            if out.get("output_type") == "stream":
                text += "".join(out.get("text", ""))
    record = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+)\s{2,}(.*)$", line)
        if m:
            record[m.group(1)] = m.group(2).strip()
    if "wall_time_s" not in record:
        raise ValueError(f"{path}: its last cell printed no provenance (wall_time_s)")
    return record


def chapter_runtimes(srcdir: Path) -> list[dict[str, Any]]:
    """One row per chapter: number, title, recorded wall time (s) and device."""
    rows = []
    for path in sorted(Path(srcdir).glob(CHAPTER_GLOB)):
        record = recorded_provenance(path)
        rows.append({
            "chapter": int(path.name[:2]),
            "file": path.name,
            "title": _chapter_title(json.loads(path.read_text())),
            "wall_time_s": float(record["wall_time_s"]),
            "device": record.get("device", "?"),
        })
    return rows


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 25 s``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"


def _table(header: list[str], rows: list[list[str]]) -> nodes.table:
    table = nodes.table(classes=["chapter-runtimes"])
    group = nodes.tgroup(cols=len(header))
    table += group
    for _ in header:
        group += nodes.colspec(colwidth=1)
    head = nodes.thead()
    group += head
    body = nodes.tbody()
    group += body
    for target, cells in ((head, [header]), (body, rows)):
        for cells_row in cells:
            row = nodes.row()
            for value in cells_row:
                entry = nodes.entry()
                entry += nodes.paragraph(text=value)
                row += entry
            target += row
    return table


class ChapterRuntimes(Directive):
    """``{chapter-runtimes}``: the wall time of each chapter as this book was built."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        env = self.state.document.settings.env
        srcdir = Path(env.srcdir)
        rows = chapter_runtimes(srcdir)
        for row in rows:
            env.note_dependency(str(srcdir / "notebooks" / row["file"]))
        body = [
            [str(r["chapter"]), r["title"], format_duration(r["wall_time_s"]), r["device"]]
            for r in rows
        ]
        total = sum(r["wall_time_s"] for r in rows)
        body.append(["", "all chapters", format_duration(total), ""])
        return [_table(["chapter", "title", "wall time", "device"], body)]


# ------------------------------------------------------------------ recorded runs

REFERENCE_DIR = "book/reference_runs"


def recorded_runs(srcdir: Path) -> list[dict[str, Any]]:
    """One row per recorded run folder, sorted by name, read by ``resnet_nb.report``."""
    from resnet_nb.report import reference_runs, run_summary

    rows = []
    for run in reference_runs(Path(srcdir) / REFERENCE_DIR):
        summary = run_summary(run, targets=())
        weights = run["provenance"].get("weights")
        schedule = run["metrics"].get("config", {}).get("schedule", "?")
        rows.append({
            **summary,
            "schedule": f"{summary['epochs']} x {summary['batch_size']}, {schedule}",
            "commit": (summary["commit"] or "?")[:10],
            "weights": (f"{weights['file']} ({weights['dtype']}, sha256 "
                        f"{weights['sha256'][:12]})" if weights else "not kept"),
            "command": summary["command"] or "?",
        })
    return rows


def recorded_sweeps(srcdir: Path) -> list[dict[str, Any]]:
    """One row per recorded fine-tuning sweep (``sweep.json`` instead of ``metrics.json``)."""
    from resnet_nb.report import display_path, portable_text
    from resnet_nb.sweep import SWEEP, load_sweep

    base = Path(srcdir) / REFERENCE_DIR
    rows = []
    for folder in sorted(p for p in base.iterdir() if (p / SWEEP).is_file()):
        sweep = load_sweep(folder)
        info, config = sweep["sweep"], sweep["sweep"]["config"]
        test = info.get("test_images")
        rows.append({
            "name": folder.name,
            "source": config.get("reference_run") if config.get("source") == "recorded"
            else portable_text(str(info.get("source", "?"))),
            "target": config["target"],
            "grid": (f"{len(config['strategies'])} strategies x budgets "
                     f"{', '.join(str(k) for k in config['budgets'])} x "
                     f"{len(config['seeds'])} seeds"),
            "test_images": f"{test:,}" if isinstance(test, int) else "?",
            "device": info.get("device_name") or info.get("device"),
            "wall_time_s": info.get("wall_time_s"),
            "commit": (sweep["provenance"].get("commit") or "?")[:10],
            "command": portable_text(info.get("command") or "?"),
            "folder": display_path(folder.absolute()),
        })
    return rows


class ReferenceRuns(Directive):
    """``{reference-runs}``: every recorded run, read from its files at build time."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        env = self.state.document.settings.env
        srcdir = Path(env.srcdir)
        rows = recorded_runs(srcdir)
        for row in rows:
            for name in ("metrics.json", "provenance.json"):
                env.note_dependency(str(srcdir / REFERENCE_DIR / row["name"] / name))
        body = [
            [r["name"], r["model"], r["schedule"], r["device"],
             "-" if r["test_acc"] is None else f"{r['test_acc']:.2%}",
             "-" if r["wall_time_s"] is None else format_duration(r["wall_time_s"]),
             r["commit"], r["weights"]]
            for r in rows
        ]
        table = _table(["run", "model", "epochs x batch", "device", "test accuracy",
                        "wall time", "commit", "weights"], body)
        sweeps = recorded_sweeps(srcdir)
        for row in sweeps:
            for name in ("sweep.json", "provenance.json"):
                env.note_dependency(str(srcdir / REFERENCE_DIR / row["name"] / name))
        out: list[nodes.Node] = [table]
        if sweeps:
            intro = nodes.paragraph(text=(
                "Fine-tuning sweeps: every strategy at every label budget, over several "
                "seeds (results.json holds every cell)."))
            out += [intro, _table(
                ["sweep", "from, to", "cells", "device", "wall time", "commit"],
                [[r["name"], f"{r['source']}, {r['target']}",
                  f"{r['grid']}; {r['test_images']} test images", r["device"],
                  "-" if r["wall_time_s"] is None else format_duration(r["wall_time_s"]),
                  r["commit"]] for r in sweeps])]
        commands = nodes.bullet_list()
        for r in rows + sweeps:
            item = nodes.list_item()
            para = nodes.paragraph()
            para += nodes.strong(text=r["name"])
            para += nodes.Text(": ")
            para += nodes.literal(text=r["command"])
            item += para
            commands += item
        return [*out, commands]


# ------------------------------------------------------------------ the notebooks zip


def zip_members(srcdir: Path) -> list[tuple[Path, str]]:
    """(file, name in the zip) for every file of the notebooks download."""
    root = Path(srcdir)
    files = [root / "README.md", root / "pyproject.toml"]
    files += sorted(root.glob("notebooks/[0-9][0-9]_*.ipynb"))
    files += sorted(root.glob("notebooks/[0-9][0-9]_*.py"))
    files += sorted(p for p in (root / "resnet_nb").rglob("*.py") if "__pycache__" not in p.parts)
    return [(f, f"resnet-nb/{f.relative_to(root).as_posix()}") for f in files if f.is_file()]


def write_notebooks_zip(srcdir: Path, target: Path) -> Path:
    """Write the zip of chapters, package and README to ``target``; return it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path, name in zip_members(srcdir):
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))  # reproducible
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    return target


class NotebooksDownload(Directive):
    """``{notebooks-download}``: a link to the zip written at the end of the build."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        env = self.state.document.settings.env
        depth = env.docname.count("/")
        href = "../" * depth + ZIP_NAME
        count = len(list(Path(env.srcdir).glob(CHAPTER_GLOB)))
        para = nodes.paragraph()
        para += nodes.reference(
            "", f"Download all {count} chapters ({ZIP_NAME})", refuri=href,
            classes=["notebooks-download"],
        )
        para += nodes.Text(
            ": each chapter as .ipynb and .py, the resnet_nb package, pyproject.toml "
            "and the README. Unzip it, run "
        )
        para += nodes.literal(text="pip install -e resnet-nb")
        para += nodes.Text(" and open a chapter from resnet-nb/notebooks.")
        return [para]


def _write_zip(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    write_notebooks_zip(Path(app.srcdir), Path(app.outdir) / ZIP_NAME)


def _fix_page(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    context.setdefault("default_mode", "auto")
    seen: set[tuple[str, str]] = set()
    unique = []
    for script in context.get("script_files", []):
        # The copies differ only in filename None vs "": compare what the page gets.
        attributes = getattr(script, "attributes", {})
        key = (getattr(script, "filename", None) or "", repr(sorted(attributes.items())))
        if key in seen:
            continue
        seen.add(key)
        unique.append(script)
    context["script_files"] = unique
    _add_py_download(app, pagename, context)


def _paired_py(app: Sphinx, pagename: str) -> Path | None:
    py = Path(app.srcdir) / f"{pagename}.py"
    return py if pagename.startswith("notebooks/") and py.exists() else None


def _add_py_download(app: Sphinx, pagename: str, context: dict[str, Any]) -> None:
    if _paired_py(app, pagename) is None:
        return
    for button in context.get("header_buttons", []):
        if button.get("label") == "download-buttons":
            button["buttons"].insert(1, {
                "type": "link",
                "url": f"{context['pathto']('_sources', 1)}/{pagename}.py",
                "text": ".py",
                "tooltip": "Download the chapter as a jupytext .py file",
                "icon": "fas fa-file-code",
                "label": "download-py-button",
            })


def _copy_py_sources(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    for docname in app.env.found_docs:
        py = _paired_py(app, docname)
        if py is not None:
            target = Path(app.outdir) / "_sources" / f"{docname}.py"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(py, target)


def _add_static(app: Sphinx) -> None:
    app.config.html_static_path.append(str(Path(__file__).parent / "static"))


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", _add_static)
    app.add_css_file("book.css")
    app.connect("html-page-context", _fix_page, priority=900)
    app.connect("build-finished", _copy_py_sources)
    app.connect("build-finished", _write_zip)
    app.add_directive("chapter-runtimes", ChapterRuntimes)
    app.add_directive("notebooks-download", NotebooksDownload)
    app.add_directive("reference-runs", ReferenceRuns)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
