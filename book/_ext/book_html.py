"""Local Sphinx fixes for the book's HTML, found by the browser test (tests/test_book.py).

- sphinx-thebe 0.3.1 registers its inline configuration script twice, so every page
  logs "Identifier 'THEBE_JS_URL' has already been declared": keep one copy.
- pydata-sphinx-theme's layout reads a ``default_mode`` template variable that
  sphinx-book-theme never sets, so every page logs "Got invalid theme mode: ." and
  resets to auto: set it to "auto" (follow the reader's system setting).

And one addition: a chapter's download menu offers its jupytext ``.py`` twin next to
the ``.ipynb``, copied into ``_sources`` with the build.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx


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


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("html-page-context", _fix_page, priority=900)
    app.connect("build-finished", _copy_py_sources)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
