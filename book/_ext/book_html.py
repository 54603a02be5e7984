"""Local Sphinx fixes for the book's HTML, found by the browser test (tests/test_book.py).

- sphinx-thebe 0.3.1 registers its inline configuration script twice, so every page
  logs "Identifier 'THEBE_JS_URL' has already been declared": keep one copy.
- pydata-sphinx-theme's layout reads a ``default_mode`` template variable that
  sphinx-book-theme never sets, so every page logs "Got invalid theme mode: ." and
  resets to auto: set it to "auto" (follow the reader's system setting).
"""

from __future__ import annotations

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


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("html-page-context", _fix_page, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
