"""The repository is consistent with itself: notebook pairs, chapter conventions,
the table of contents, and the environment files against the pins."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import jupytext
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IDS = [p.stem for p in CHAPTERS]


def _cells(path: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    nb = jupytext.read(path)
    return [
        (c.cell_type, c.source.strip(), tuple(sorted(c.metadata.get("tags", []))))
        for c in nb.cells
    ]


def test_there_are_chapters() -> None:
    assert CHAPTERS, "no notebooks/NN_topic.py chapters found"


def test_every_chapter_is_a_pair() -> None:
    assert [p.stem for p in CHAPTERS] == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("py", CHAPTERS, ids=IDS)
def test_pair_in_sync(py: Path) -> None:
    """The .ipynb has exactly the cells of the .py (run `make sync` and re-execute)."""
    ours, theirs = _cells(py), _cells(py.with_suffix(".ipynb"))
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a == b, f"{py.name} and its .ipynb differ at cell {i}: regenerate the pair"
    assert len(ours) == len(theirs), f"{py.name}: {len(ours)} cells, .ipynb {len(theirs)}"


@pytest.mark.parametrize("py", CHAPTERS, ids=IDS)
def test_chapter_conventions(py: Path) -> None:
    nb = jupytext.read(py)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one code cell must be tagged `parameters`"
    params_cell = code[tagged[0]]
    assert "import" not in params_cell.source, "the parameters cell holds literals only"
    after = code[tagged[0] + 1].source
    assert "resnet_nb.params" in after or "check_" in after, (
        "the cell after `parameters` must validate them"
    )
    assert "provenance(" in code[-1].source, "the last code cell must print provenance"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and re.search(r"^# \S", first.source, re.M)
    headings = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for section in ("## Summary", "## Exercises"):
        assert section in headings, f"{py.name} lacks a `{section}` section"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_has_outputs(nb_path: Path) -> None:
    """The book renders the committed outputs: every code cell must have been run."""
    nb = jupytext.read(nb_path)
    unrun = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and not c.get("execution_count")]
    assert not unrun, f"{nb_path.name}: code cells {unrun} have no outputs; run `make notebooks`"
    errors = [
        i for i, c in enumerate(nb.cells) if c.cell_type == "code"
        for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors, f"{nb_path.name}: cells {errors} hold error outputs"


def test_toc_lists_every_chapter() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    for py in CHAPTERS:
        assert f"notebooks/{py.stem}" in files, f"{py.stem} is missing from _toc.yml"
    for f in files + [toc["root"]]:
        found = [p for p in (ROOT / f"{f}.md", ROOT / f"{f}.ipynb") if p.exists()]
        assert found, f"_toc.yml names {f}, which does not exist"


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)\s*==\s*([^\s;]+)", line)
        if m:
            pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return pins


def test_environment_yml_agrees_with_pins() -> None:
    """environment.yml pins the same versions as requirements.in / requirements.txt."""
    lock = _pins((ROOT / "requirements.txt").read_text().splitlines())
    top = _pins((ROOT / "requirements.in").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    conda_pins = _pins(pip_section)
    assert any(str(d).startswith("python=3.11") for d in deps), "environment.yml: python=3.11"
    for name, version in top.items():
        assert lock.get(name) == version, f"requirements.txt pins {name}=={lock.get(name)}, .in {version}"
    assert conda_pins, "environment.yml has no pinned pip packages"
    for name, version in conda_pins.items():
        assert lock.get(name) == version, (
            f"environment.yml pins {name}=={version} but requirements.txt has {lock.get(name)}"
        )
    missing = sorted(set(top) - set(conda_pins))
    assert not missing, f"environment.yml lacks the top-level pins {missing}"
    jb = next(line for line in (ROOT / "requirements.in").read_text().splitlines() if line.startswith("jupyter-book"))
    assert "<2" in jb and lock["jupyter-book"].startswith("1."), "Jupyter Book must stay at 1.x"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make book" in readme
    assert re.search(r"^\s*(exec\s+)?make test\b", ci, re.M), ".ci/run must call `make test`"


# ---------------------------------------------------------------- code a reader can read

MAX_CODE_LINE = 79  # what the book's text column shows at a 1300-px window, no scrolling


@pytest.mark.parametrize("py", CHAPTERS, ids=IDS)
def test_code_lines_fit_the_page(py: Path) -> None:
    """Every line of every code cell is at most 79 characters (markdown is wrapped)."""
    nb = jupytext.read(py)
    long = [
        f"cell {i} line {j}: {len(line)} chars"
        for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
        for j, line in enumerate(cell.source.splitlines(), 1) if len(line) > MAX_CODE_LINE
    ]
    assert not long, f"{py.name}: code lines over {MAX_CODE_LINE} characters: {long}"


# ---------------------------------------------------------------- repository address,
# install cell, launch buttons


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def _version() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    return re.search(r'^version\s*=\s*"([^"]+)"', text, re.M).group(1)


def _install_cell(py: Path) -> str:
    code = [c for c in jupytext.read(py).cells if c.cell_type == "code"]
    return code[0].source


def test_repository_address_in_one_place() -> None:
    """_config.yml holds the address; README and the install cells agree with it."""
    repo = _config()["repository"]
    url = repo["url"]
    parsed = urlparse(url)
    assert parsed.scheme == "https" and parsed.netloc == "github.com"
    assert re.fullmatch(r"/[\w.-]+/[\w.-]+", parsed.path), f"not a GitHub repository: {url}"
    assert repo["branch"] == f"v{_version()}", "launch buttons must open the version's tag"
    import resnet_nb

    assert resnet_nb.__version__ == _version()
    readme_urls = set(re.findall(r"https://github\.com/[\w./-]+", (ROOT / "README.md").read_text()))
    assert readme_urls == {url}, f"README names {readme_urls}, _config.yml {url}"


@pytest.mark.parametrize("py", CHAPTERS, ids=IDS)
def test_first_cell_installs_the_package(py: Path) -> None:
    cell = _install_cell(py)
    assert cell == _install_cell(CHAPTERS[0]), f"{py.name}: install cell differs from chapter 1's"
    assert f'REPOSITORY = "{_config()["repository"]["url"]}"' in cell
    assert f'VERSION = "{_version()}"' in cell
    assert 'git+{REPOSITORY}@v{VERSION}' in cell and "RESNET_NB_INSTALL_FROM" in cell
    assert "import resnet_nb" not in cell  # it must run where the package is missing


@pytest.mark.parametrize("py", CHAPTERS, ids=IDS)
def test_launch_urls_are_well_formed(py: Path) -> None:
    """The Binder and Colab addresses sphinx-book-theme builds for each chapter."""
    config = _config()
    repo = config["repository"]
    org_repo = urlparse(repo["url"]).path.strip("/")
    path = f"{repo['path_to_book'].strip('/') + '/' if repo['path_to_book'] else ''}notebooks/{py.stem}.ipynb"
    assert (ROOT / path).is_file()
    launch = config["launch_buttons"]
    binder = f"{launch['binderhub_url']}/v2/gh/{org_repo}/{repo['branch']}?urlpath=lab/tree/{path}"
    colab = f"{launch['colab_url']}/github/{org_repo}/blob/{repo['branch']}/{path}"
    for url in (binder, colab):
        parsed = urlparse(url)
        assert parsed.scheme == "https" and parsed.netloc and " " not in url, url
        assert "//" not in parsed.path, url


def test_binder_environment() -> None:
    reqs = (ROOT / "binder" / "requirements.txt").read_text()
    lock = _pins((ROOT / "requirements.txt").read_text().splitlines())
    pins = {}
    for line in reqs.splitlines():
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s+]+)(\+cpu)?", line.split("#")[0].strip())
        if m:
            pins[m.group(1).lower()] = m.group(2)
    assert {"torch", "torchvision", "matplotlib"} <= set(pins)
    for name, version in pins.items():
        assert lock.get(name) == version, f"binder pins {name}=={version}, requirements.txt {lock.get(name)}"
    post = (ROOT / "binder" / "postBuild")
    assert post.stat().st_mode & 0o111 and "pip install --no-deps -e ." in post.read_text()


@pytest.mark.slow
def test_install_cell_installs_into_a_fresh_environment(tmp_path: Path) -> None:
    """Where resnet_nb is missing, the first cell installs it (here from a local copy)."""
    import os
    import shutil
    import site
    import subprocess
    import sys

    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "resnet_nb", source / "resnet_nb",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    # Borrow torch, pip and setuptools from this environment, but not its resnet_nb:
    # a plain path entry does not run that folder's .pth files (the editable install).
    new_site = subprocess.run(
        [str(python), "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    Path(new_site, "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["RESNET_NB_INSTALL_FROM"] = f"--no-deps --no-build-isolation {source}"
    work = tmp_path / "notebooks"
    work.mkdir()
    missing = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('resnet_nb'))"],
        capture_output=True, text=True, cwd=work, env=env, check=True,
    ).stdout.strip()
    assert missing == "None", "resnet_nb must be missing before the install cell runs"
    script = _install_cell(CHAPTERS[0]) + (
        "\nimport resnet_nb, resnet_nb.models as m\n"
        "print('imported', resnet_nb.__version__, m.count_parameters(m.cifar_resnet(20)))\n"
        "print('from', resnet_nb.__file__)\n"
    )
    proc = subprocess.run([str(python), "-c", script], capture_output=True, text=True,
                          cwd=work, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resnet_nb is missing: pip install" in proc.stdout
    assert f"imported {_version()} 269722" in proc.stdout
    assert str(env_dir) in proc.stdout.split("from", 1)[1], "resnet_nb came from elsewhere"


@pytest.mark.parametrize("py", CHAPTERS, ids=IDS)
def test_library_source_shown_in_chapters_fits_the_page(py: Path) -> None:
    """Library code a chapter displays with inspect.getsource is at most 79 characters."""
    import inspect

    from resnet_nb import models

    shown = re.findall(r"inspect\.getsource\(([\w.]+)\)", py.read_text())
    long = []
    for dotted in shown:
        obj = models
        for part in dotted.removeprefix("models.").split("."):
            obj = getattr(obj, part)
        for i, line in enumerate(inspect.getsource(obj).splitlines()):
            if len(line) > MAX_CODE_LINE:
                long.append(f"{dotted} line {i + 1}: {len(line)} chars")
    assert not long, f"{py.name} shows library code wider than the page: {long}"


def test_code_blocks_in_book_pages_fit_the_page() -> None:
    """Fenced code (```bash, ```python) in book/*.md is at most 79 characters wide."""
    long = []
    for page in sorted((ROOT / "book").glob("*.md")):
        fence = None  # None outside a fence, else its info string
        for line in page.read_text().splitlines():
            if line.startswith("```"):
                fence = line[3:].strip() if fence is None else None
                continue
            is_code = fence is not None and not fence.startswith("{")
            if is_code and len(line) > MAX_CODE_LINE:
                long.append(f"{page.name}: {line[:50]}... ({len(line)} chars)")
    assert not long, f"code lines wider than the page: {long}"
