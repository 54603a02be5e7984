"""The book's prose never states a result that no run produced.

Result statements are printed from code (``display(Markdown(f"..."))``), so they come
from the run being read. This test scans the typed markdown of every chapter, and every
prose page under ``book/``, for numbers that look like results - accuracies and errors
(``%``), speed-ups (``3.1x``, ``×``, ``-fold``) and throughputs (``img/s``) - and fails
when one does not appear, as a whole number *with its unit*, in the outputs: the
chapter's own outputs for a chapter, any chapter's outputs for a book page. "90%" is
not found in an output that says "90.5%", "190%" or "0.90". Sentences that cite a
source (``{cite}``) are exempt: they quote published figures.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PAGES = sorted((ROOT / "book").glob("*.md"))

CLAIM = re.compile(
    r"(?<![\w.])(\d+(?:[.,]\d+)*)\s?(%|×|x(?!\w)|-fold|img/s|images/s)", re.IGNORECASE
)
# Spellings of one unit that an output may use for the prose's unit.
UNITS = {"%": r"%", "x": r"(?:x(?!\w)|×)", "×": r"(?:x(?!\w)|×)", "-fold": r"-fold",
         "img/s": r"(?:img/s|images/s)", "images/s": r"(?:img/s|images/s)"}


def claims(markdown: str) -> list[tuple[str, str]]:
    """Result-like (number, unit) pairs in ``markdown``, outside math, code and cited sentences."""
    text = re.sub(r"```.*?```|`[^`]*`|\$\$.*?\$\$|\$[^$]*\$", " ", markdown, flags=re.S)
    found = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n\s*\n", text):
        if "{cite" in sentence:
            continue
        found += [(m.group(1), m.group(2).lower()) for m in CLAIM.finditer(sentence)]
    return found


def is_produced(number: str, unit: str, produced: str) -> bool:
    """Does ``produced`` show ``number`` as a whole number, followed by ``unit``?"""
    pattern = rf"(?<![\w.,]){re.escape(number)}(?![\d])(?:[.,]0+)?\s?{UNITS[unit]}"
    return re.search(pattern, produced, flags=re.IGNORECASE) is not None


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
    assert claims(md) == [("71.3", "%"), ("4.2", "x"), ("512", "img/s"), ("2", "x")]
    assert claims("The paper reports 6.43% error {cite}`he2016deep`.") == []
    assert claims("Use `lr=0.1` and a 3x3 kernel.") == []


def test_matcher_wants_the_whole_number_and_its_unit() -> None:
    """A number that is only part of an output number, or lacks the unit, is not found."""
    out = "val acc 90.5%, 190% of the budget, 0.90 as a fraction, 80 epochs, 3.4x faster"
    assert not is_produced("90", "%", out)  # 90.5% and 190% contain "90"
    assert not is_produced("80", "%", out)  # 80 without its unit
    assert not is_produced("3", "x", out)  # 3.4x
    assert not is_produced("4", "x", out)
    assert is_produced("90.5", "%", out) and is_produced("190", "%", out)
    assert is_produced("3.4", "x", out) and is_produced("3.4", "×", out)
    assert is_produced("90", "%", "reached 90 % after")
    assert is_produced("1,200", "img/s", "1,200 images/s")
    assert not is_produced("200", "img/s", "1,200 img/s")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_prose_numbers_come_from_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    produced = outputs_text(nb)
    missing = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for number, unit in claims(cell.source):
            if not is_produced(number, unit, produced):
                missing.append(f"cell {i}: {number}{unit}")
    assert not missing, (
        f"{path.name}: the prose states results that no output of the chapter shows "
        f"({', '.join(missing)}); print them from code instead of typing them"
    )


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_book_pages_state_no_unproduced_results(page: Path) -> None:
    produced = "\n".join(outputs_text(nbformat.read(p, as_version=4)) for p in NOTEBOOKS)
    missing = [f"{n}{u}" for n, u in claims(page.read_text()) if not is_produced(n, u, produced)]
    assert not missing, (
        f"book/{page.name} states results that no chapter produced: {missing}; "
        "compute them in a chapter (or at build time), cite a source, or remove them"
    )
