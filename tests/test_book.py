"""The book builds with warnings as errors, and reads correctly in a real browser.

The build renders the committed notebook outputs (``execute_notebooks: off``): earlier
in the same test run, nbval has executed every chapter, so each chapter runs once per
run. ``make book`` executes them itself.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build" / "test-book"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.book


def _toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [f"{f}.html" for f in files]


@pytest.fixture(scope="session")
def built_book() -> Path:
    """Build the book once per test run into _build/test-book; return the HTML folder."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    # Paths in a --config file resolve against its folder: make them absolute.
    config["bibtex_bibfiles"] = [str(ROOT / p) for p in config["bibtex_bibfiles"]]
    config["html"]["favicon"] = str(ROOT / config["html"]["favicon"])
    local = config["sphinx"]["local_extensions"]
    config["sphinx"]["local_extensions"] = {name: str(ROOT / path) for name, path in local.items()}
    if BUILD.exists():
        shutil.rmtree(BUILD)
    BUILD.mkdir(parents=True)
    config_path = BUILD / "_config.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    jb = Path(sys.executable).with_name("jupyter-book")
    started = time.perf_counter()
    proc = subprocess.run(
        [str(jb), "build", str(ROOT), "--path-output", str(BUILD), "--config", str(config_path),
         "-n", "-W", "--keep-going"],
        capture_output=True, text=True, cwd=ROOT,
    )
    log = proc.stdout + proc.stderr
    (BUILD / "build.log").write_text(log)
    assert proc.returncode == 0, f"book build failed (exit {proc.returncode}):\n{log[-6000:]}"
    print(f"book built in {time.perf_counter() - started:.0f} s")
    return BUILD / "_build" / "html"


def test_book_builds_every_page(built_book: Path) -> None:
    for page in _toc_pages():
        assert (built_book / page).exists(), f"{page} was not built"


def test_chapters_show_their_plots(built_book: Path) -> None:
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        html = (built_book / "notebooks" / f"{nb.stem}.html").read_text()
        assert re.search(r"<img[^>]+src=\"[^\"]+\.(png|svg)\"", html), f"{nb.stem}: no plot in the HTML"


def test_diagrams_are_numbered_svg_figures_with_alt_text(built_book: Path) -> None:
    """Chapters 1 and 2 show their diagrams as SVG, in numbered figures, with alt text."""
    expected = {"01_residual_block": ["fig-plain-vs-residual", "fig-shortcut-a-b",
                                      "fig-original-vs-preact"],
                "02_full_resnet": ["fig-layouts", "fig-stem-sizes"]}
    for stem, names in expected.items():
        html = (built_book / "notebooks" / f"{stem}.html").read_text()
        for name in names:
            m = re.search(rf'<figure[^>]*id="{name}".*?</figure>', html, re.S)
            assert m, f"{stem}: no figure {name}"
            img = re.search(r"<img[^>]*>", m.group(0)).group(0)
            assert re.search(r'src="[^"]+\.svg"', img), f"{stem}/{name}: not an SVG: {img}"
            alt = re.search(r'alt="([^"]*)"', img)
            assert alt and len(alt.group(1)) > 20, f"{stem}/{name}: no alt text"
            assert re.search(r"Fig\.\s*\d", m.group(0)), f"{stem}/{name}: not numbered"
            assert f'href="#{name}"' in html, f"{stem}: the prose never refers to {name}"


def test_intro_run_times_and_download(built_book: Path) -> None:
    import importlib.util
    import zipfile

    spec = importlib.util.spec_from_file_location("book_html", ROOT / "book" / "_ext" / "book_html.py")
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)  # type: ignore[union-attr]
    html = (built_book / "book" / "intro.html").read_text()
    table = re.search(r'<table[^>]*chapter-runtimes.*?</table>', html, re.S)
    assert table, "the intro has no run-time table"
    for row in ext.chapter_runtimes(ROOT):
        assert ext.format_duration(row["wall_time_s"]) in table.group(0), row
    zip_path = built_book / ext.ZIP_NAME
    assert zip_path.is_file() and f'href="../{ext.ZIP_NAME}"' in html
    names = zipfile.ZipFile(zip_path).namelist()
    assert "resnet-nb/notebooks/01_residual_block.ipynb" in names
    runs_page = (built_book / "book" / "reference_runs.html").read_text()
    runs_table = re.search(r"<table[^>]*chapter-runtimes.*?</table>", runs_page, re.S)
    assert runs_table, "the reference-runs page has no table of the runs"
    for row in ext.recorded_runs(ROOT):
        assert row["name"] in runs_table.group(0) and row["commit"] in runs_table.group(0), row
    for row in ext.recorded_sweeps(ROOT):
        assert row["name"] in runs_page and row["commit"] in runs_page, row


# ---------------------------------------------------------------- the browser check


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep pytest's output readable
        pass


@pytest.fixture(scope="session")
def served_book(built_book: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(built_book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync"],
        )
        yield b
        b.close()


# Messages that a theme or library logs whatever the configuration; each one explained.
ALLOWED_CONSOLE = [
    # None so far.
]


# The text a reader sees outside code, outputs and typeset math: TeX must not show here.
_PROSE_TEXT = """() => {
  const article = document.querySelector("article").cloneNode(true);
  article.querySelectorAll("pre, code, .cell_output, .output, mjx-container, script, style")
    .forEach(e => e.remove());
  return article.innerText;
}"""


# The window the book is read in: code must not scroll sideways at this width.
VIEWPORT = {"width": 1300, "height": 900}

# Code cells, outputs and tables in the article whose content is wider than their box.
_SCROLLING = """() => {
  const wide = [];
  document.querySelectorAll("article div.cell, article div.cell *, article div.highlight pre").forEach(e => {
    const overflow = getComputedStyle(e).overflowX;
    if ((overflow === "auto" || overflow === "scroll") && e.scrollWidth > e.clientWidth + 1) {
      const text = (e.innerText || "").split("\\n").find(l => l.length > 0) || "";
      wide.push(`${e.tagName.toLowerCase()} ${e.scrollWidth}>${e.clientWidth}: ${text.slice(0, 60)}`);
    }
  });
  return wide;
}"""


def _ids(html: str) -> set[str]:
    return set(re.findall(r"\bid=\"([^\"]+)\"", html))


def test_every_page_in_a_browser(built_book: Path, served_book: str, browser: object) -> None:
    page = browser.new_page(viewport=VIEWPORT)  # type: ignore[attr-defined]
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console.append(f"page error: {e}"))
    page.on("response", lambda r: console.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    links: set[str] = set()
    counts = {"pages": 0, "images": 0, "svg": 0, "math": 0, "links": 0}
    for rel in _toc_pages():
        url = urljoin(served_book, rel)
        console.clear()
        response = page.goto(url, wait_until="load")
        assert response is not None and response.status == 200, f"{rel}: HTTP {response and response.status}"
        page.wait_for_function("() => !window.MathJax || !MathJax.startup || MathJax.startup.promise")
        page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
        broken = page.eval_on_selector_all(
            "img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0)).map(e => e.src)"
        )
        assert not broken, f"{rel}: images that did not load: {broken}"
        svgs = page.eval_on_selector_all(
            "article .cell_output img[src$='.svg'], article figure img[src$='.svg']",
            "els => els.map(e => [e.naturalWidth, e.naturalHeight, e.getBoundingClientRect().width])",
        )
        assert all(w > 0 and h > 0 for w, h, _ in svgs), f"{rel}: an SVG has no size: {svgs}"
        # A figure shrunk by the column shrinks its text: keep them at >= 90% of natural size.
        small = [s for s in svgs if s[2] < 0.9 * s[0]]
        assert not small, f"{rel}: SVG figures shown below 90% of their size: {small}"
        counts["svg"] += len(svgs)
        scrolling = page.evaluate(_SCROLLING)
        assert not scrolling, (
            f"{rel}: code or output scrolls sideways at {VIEWPORT['width']} px: {scrolling}"
        )
        counts["images"] += page.eval_on_selector_all("img", "els => els.length")
        math = page.eval_on_selector_all("div.math, span.math", "els => els.length")
        typeset = page.eval_on_selector_all("mjx-container", "els => els.length")
        assert typeset >= math, f"{rel}: {math} math elements but only {typeset} typeset by MathJax"
        counts["math"] += typeset
        prose = page.evaluate(_PROSE_TEXT)
        leftovers = [t for t in ("$", "\\[", "\\(", "\\begin{") if t in prose]
        assert not leftovers, f"{rel}: raw TeX {leftovers} left in the prose"
        errors = [c for c in console if not any(a in c for a in ALLOWED_CONSOLE)]
        assert not errors, f"{rel}: console errors {errors}"
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
            if href.startswith(served_book):
                links.add(href)
        counts["pages"] += 1

    # every internal link and anchor resolves
    pages_ids: dict[str, set[str]] = {}
    for href in sorted(links):
        parsed = urlparse(href)
        path = parsed.path.lstrip("/") or "index.html"
        target = built_book / path
        if target.is_dir():
            target = target / "index.html"
        assert target.exists(), f"broken internal link: {href}"
        if parsed.fragment and target.suffix == ".html":
            ids = pages_ids.setdefault(str(target), _ids(target.read_text()))
            assert parsed.fragment in ids, f"broken anchor: {href}"
        counts["links"] += 1
    print(f"browser check: {counts}")
    assert counts["pages"] == len(_toc_pages()) and counts["math"] > 0 and counts["links"] > 0


def test_launch_and_download_buttons(built_book: Path, served_book: str, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    org_repo = urlparse(repo["url"]).path.strip("/")
    branch = repo["branch"]
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        page.goto(urljoin(served_book, f"notebooks/{nb.stem}.html"), wait_until="load")
        hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
        launch = [h for h in hrefs if "mybinder.org" in h or "colab.research.google.com" in h]
        assert launch, f"{nb.stem}: no launch buttons"
        for h in launch:
            assert f"notebooks/{nb.stem}.ipynb" in h, f"{nb.stem}: launch button opens {h}"
            assert f"{org_repo}" in h and f"/{branch}" in h, f"{nb.stem}: {h} misses {org_repo}@{branch}"
        downloads = [h for h in hrefs if "/_sources/" in h]
        for suffix in (".ipynb", ".py"):
            assert any(h.endswith(f"{nb.stem}{suffix}") for h in downloads), f"{nb.stem}: no {suffix} download"
        for h in downloads:
            assert page.request.get(h).status == 200, f"{nb.stem}: download {h} is missing"


def test_search_finds_residual(served_book: str, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(urljoin(served_book, "search.html?q=residual"), wait_until="load")
    page.wait_for_selector("#search-results ul li", timeout=20_000)
    assert page.eval_on_selector_all("#search-results ul li", "els => els.length") > 0
