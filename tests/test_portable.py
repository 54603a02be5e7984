"""No path of the machine that built the book appears in anything a reader sees.

Chapters print paths through ``resnet_nb.report.display_path`` / ``portable_text``
(relative to ``$RESNET_NB_DATA``, the cache root or ``~``). This test scans every
committed notebook output and every file under ``book/`` for absolute paths.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest

from resnet_nb.report import display_path, portable_text

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
BOOK_FILES = sorted(
    p for p in (ROOT / "book").rglob("*")
    if p.is_file() and p.suffix in {".md", ".json", ".txt", ".bib", ".yml", ".py"}
)

# An absolute path into a machine's folders (not a URL, not "img/s" or "a / b").
MACHINE_PATH = re.compile(
    r"(?<![\w.~$/:])/(?:home|root|tmp|work|Users|mnt|srv|opt|var|data|scratch|private)/[\w.+-]"
)


def machine_paths(text: str) -> list[str]:
    """Absolute machine paths in ``text`` (a snippet around each)."""
    found = [text[m.start(): m.start() + 60].split()[0] for m in MACHINE_PATH.finditer(text)]
    for literal in {str(ROOT), os.path.expanduser("~")} - {"/", ""}:
        if literal in text and len(literal) > 3:
            found.append(literal)
    return found


def _outputs(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(str(out.get("text", "")))
            parts.append(str(out.get("traceback", "")))
            for value in out.get("data", {}).values():
                parts.append(str(value))
    return "\n".join(parts)


def test_matcher() -> None:
    assert machine_paths("JPEG copy: /work/main/.devdata/cifar10-jpeg.zip;")
    assert machine_paths("saved /root/.cache/resnet_nb/x/checkpoint.pt")
    assert not machine_paths("JPEG copy: $RESNET_NB_DATA/cifar10-jpeg.zip")
    assert not machine_paths("see https://github.com/home/x and 3 img/s, 45,000 / 5,000")
    assert not machine_paths("~/.cache/resnet_nb/finetune and runs/full/checkpoint.pt")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_no_machine_paths_in_outputs(path: Path) -> None:
    found = machine_paths(_outputs(nbformat.read(path, as_version=4)))
    assert not found, (
        f"{path.name}: outputs show paths of the machine that ran it: {sorted(set(found))}; "
        "print paths with resnet_nb.report.display_path / portable_text and re-run"
    )


def test_no_machine_paths_in_book_files() -> None:
    bad = {}
    for path in BOOK_FILES:
        found = machine_paths(path.read_text(errors="replace"))
        if found:
            bad[str(path.relative_to(ROOT))] = sorted(set(found))
    assert not bad, f"absolute machine paths in book files: {bad}"


def test_display_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = tmp_path / "shared" / "data"
    monkeypatch.setenv("RESNET_NB_DATA", str(data))
    monkeypatch.setenv("RESNET_NB_CACHE", str(tmp_path / "cache"))
    assert display_path(data / "cifar10-jpeg.zip") == "$RESNET_NB_DATA/cifar10-jpeg.zip"
    assert display_path(data) == "$RESNET_NB_DATA"
    assert display_path(tmp_path / "cache" / "a.pt") == "$RESNET_NB_CACHE/a.pt"
    assert display_path("/somewhere/else/run7") == ".../run7"
    assert display_path("runs/quick") == "runs/quick"
    home = os.path.expanduser("~")
    monkeypatch.delenv("RESNET_NB_CACHE")
    assert display_path(os.path.join(home, ".cache", "resnet_nb", "x.pt")) == (
        "~/.cache/resnet_nb/x.pt"
    )
    text = portable_text(f"JPEG copy: {data}/cifar10-jpeg.zip; --out /tmp/r/full https://a.b/c")
    assert text == "JPEG copy: $RESNET_NB_DATA/cifar10-jpeg.zip; --out .../full https://a.b/c"
    assert not machine_paths(text)
