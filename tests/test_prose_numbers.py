"""A chapter's prose never states a result that the chapter did not produce.

Result statements are printed from code (``display(Markdown(f"..."))``), so they come
from the run being read. This test scans the typed markdown of every chapter for numbers
that look like results - accuracies and errors (``%``), speed-ups (``3.1x``, ``×``) and
throughputs (``img/s``) - and fails when one does not appear in that chapter's outputs.
Sentences that cite a source (``{cite}``) are exempt: they quote published figures.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

CLAIM = re.compile(
    r"(?<![\w.])(\d+(?:[.,]\d+)*)\s?(%|×|x(?!\w)|-fold|\s?img/s|\s?images/s)", re.IGNORECASE
)


def claims(markdown: str) -> list[str]:
    """Result-like numbers in ``markdown``, outside math, code and cited sentences."""
    text = re.sub(r"```.*?```|`[^`]*`|\$\$.*?\$\$|\$[^$]*\$", " ", markdown, flags=re.S)
    found = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n\s*\n", text):
        if "{cite" in sentence:
            continue
        found += [m.group(1) for m in CLAIM.finditer(sentence)]
    return found


def outputs_text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            for mime in ("text/plain", "text/markdown", "text/html"):
                parts.append(str(out.get("data", {}).get(mime, "")))
    return "\n".join(parts)


def test_claims_are_found() -> None:
    """The scanner itself: what it treats as a claim and what it leaves alone."""
    md = "ResNet-20 reached 71.3% in 3 epochs, a 4.2x speed-up at 512 img/s. $x^2$ is 2x."
    assert claims(md) == ["71.3", "4.2", "512", "2"]
    assert claims("The paper reports 6.43% error {cite}`he2016deep`.") == []
    assert claims("Use `lr=0.1` and a 3x3 kernel.") == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_prose_numbers_come_from_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    produced = outputs_text(nb)
    missing = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for number in claims(cell.source):
            if number not in produced:
                missing.append(f"cell {i}: {number}")
    assert not missing, (
        f"{path.name}: the prose states results that no output of the chapter shows "
        f"({', '.join(missing)}); print them from code instead of typing them"
    )
