"""Provenance and small display helpers shared by every chapter.

Each chapter ends with :func:`provenance`, which records where its numbers came
from: device, library versions, parameters, data source and wall time.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "provenance",
    "display_path",
    "portable_text",
    "device_name",
    "time_to_accuracy",
    "load_run",
    "reference_runs",
    "run_summary",
]


def device_name(device: Any = None) -> str:
    """A human-readable name for ``device`` (default: the best available one)."""
    import torch

    if device is None:
        if torch.cuda.is_available():
            device = "cuda"
        elif hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        cpu = platform.processor() or platform.machine()
        return f"cpu: {cpu}, {torch.get_num_threads()} threads"
    return str(device)


def _roots() -> list[tuple[str, str]]:
    """(absolute folder, how to print it), most specific first."""
    home = os.path.expanduser("~")
    roots = []
    data = os.environ.get("RESNET_NB_DATA")
    roots.append((os.path.abspath(os.path.expanduser(data or "data")), "$RESNET_NB_DATA"))
    cache = os.environ.get("RESNET_NB_CACHE")
    if cache:
        roots.append((os.path.abspath(os.path.expanduser(cache)), "$RESNET_NB_CACHE"))
    roots.append((os.path.join(home, ".cache", "resnet_nb"), "~/.cache/resnet_nb"))
    if home not in ("", "/"):
        roots.append((home, "~"))
    # A longer root first, so that a data root inside the home folder wins.
    return sorted(roots, key=lambda r: len(r[0]), reverse=True)


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` as the book may print it: relative to a root any reader has.

    A path under the data root becomes ``$RESNET_NB_DATA/...``, one under the
    cache ``$RESNET_NB_CACHE/...`` or ``~/.cache/resnet_nb/...``, one under the
    home folder ``~/...``; any other absolute path keeps only its file name
    (``.../name``), so no path of the machine that built the book is printed.
    Relative paths are returned as they are.
    """
    text = os.fspath(path)
    if not os.path.isabs(text):
        return text
    norm = os.path.normpath(text)
    for root, label in _roots():
        if norm == root:
            return label
        if norm.startswith(root.rstrip(os.sep) + os.sep):
            return label + "/" + os.path.relpath(norm, root).replace(os.sep, "/")
    return ".../" + os.path.basename(norm)


_ABSOLUTE = None


def portable_text(text: str) -> str:
    """``text`` with every absolute path in it replaced by :func:`display_path`.

    For strings that mention paths, such as a data source ("CIFAR-10 train,
    JPEG copy: /data/cifar10-jpeg.zip") or a command line.
    """
    import re

    global _ABSOLUTE
    if _ABSOLUTE is None:
        _ABSOLUTE = re.compile(r"(?<![\w.~$/:])/(?:[\w.+-]+/)*[\w.+-]+")
    return _ABSOLUTE.sub(lambda m: display_path(m.group(0)), text)


def provenance(
    params: Mapping[str, Any],
    started: float,
    data_source: str | None = None,
    device: Any = None,
) -> dict[str, Any]:
    """Collect and print what produced a chapter's outputs.

    Parameters
    ----------
    params:
        The chapter's parameters (the values of the ``parameters`` cell as run).
    started:
        ``time.perf_counter()`` taken at the top of the chapter.
    data_source:
        Where the data came from (e.g. the path of the CIFAR-10 copy), if any.
        Absolute paths in it are printed relative to the data or cache root
        (:func:`portable_text`).
    device:
        The device the chapter computed on (default: the best available one).

    Returns the record as a dict, so a script can also save it as JSON.
    """
    import torch
    import torchvision

    record = {
        "device": device_name(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "platform": platform.platform(),
        "parameters": dict(params),
        "data_source": portable_text(data_source) if data_source else "none (no dataset used)",
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    width = max(len(k) for k in record)
    for key, value in record.items():
        if isinstance(value, dict):
            value = json.dumps(value, default=str)
        print(f"{key:<{width}}  {value}")
    return record


# --------------------------------------------------------------------------------------
# Recorded runs (run folders written by resnet_nb.train.fit, and the reference runs)
# --------------------------------------------------------------------------------------


def time_to_accuracy(
    history: Sequence[Mapping[str, Any]], target: float
) -> Mapping[str, Any] | None:
    """The first row of ``history`` whose validation accuracy is at least ``target``.

    ``history`` is the per-epoch list that :func:`resnet_nb.train.fit` returns and
    writes as ``history.json``; its ``wall_time_s`` says when that epoch (and its
    validation) ended. Returns ``None`` if the run never reached ``target``.
    """
    if not 0 < target <= 1:
        raise ValueError(f"target={target!r} is invalid: give a fraction in (0, 1], e.g. 0.94")
    for row in history:
        acc = row.get("val_acc")
        if acc is not None and acc >= target:
            return row
    return None


def load_run(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a run folder: ``metrics.json``, ``history.json`` and, if present,
    ``provenance.json`` (how a reference run was recorded).

    Returns ``{"name", "folder", "metrics", "history", "provenance"}``. A folder
    without the two files written at the end of a run raises FileNotFoundError
    naming the missing file.
    """
    path = Path(folder)
    record: dict[str, Any] = {"name": path.name, "folder": str(path)}
    for key, required in (("metrics", True), ("history", True), ("provenance", False)):
        file = path / f"{key}.json"
        if not file.is_file():
            if required:
                raise FileNotFoundError(
                    f"{file} is missing: {path} is not a finished run folder of "
                    "python -m resnet_nb.train (it writes history.json every epoch and "
                    "metrics.json at the end)"
                )
            record[key] = {}
            continue
        record[key] = json.loads(file.read_text())
    return record


def reference_runs(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every run folder under ``root`` (see :func:`load_run`), sorted by name."""
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"no folder of recorded runs at {base.absolute()}")
    return [load_run(p) for p in sorted(base.iterdir()) if (p / "metrics.json").is_file()]


def run_summary(run: Mapping[str, Any], targets: Sequence[float] = (0.92, 0.94)) -> dict[str, Any]:
    """One row of figures for a run loaded by :func:`load_run`.

    ``images_per_s`` is the median over the epochs after the first (which also
    compiles and warms up); ``reached`` maps each target to the wall time in
    seconds at which validation accuracy first reached it, or ``None``.
    """
    metrics, history = run["metrics"], run["history"]
    config = metrics.get("config", {})
    rates = [row["images_per_s"] for row in history[1:]] or [
        row["images_per_s"] for row in history
    ]
    reached = {}
    for target in targets:
        row = time_to_accuracy(history, target)
        reached[target] = None if row is None else float(row["wall_time_s"])
    model = str(config.get("model", "?"))
    if config.get("stem"):
        model += f" ({config['stem']} stem)"
    return {
        "name": run["name"],
        "device": metrics.get("device_name") or metrics.get("device"),
        "torch": metrics.get("torch"),
        "model": model,
        "epochs": config.get("epochs"),
        "batch_size": config.get("batch_size"),
        "compiled": bool(config.get("compile")),
        "precision": metrics.get("precision"),
        "images_per_s": statistics.median(rates) if rates else None,
        "best_val_acc": metrics.get("best_val_acc"),
        "test_acc": metrics.get("test_acc"),
        "wall_time_s": metrics.get("wall_time_s"),
        "reached": reached,
        "command": portable_text(metrics["command"]) if metrics.get("command") else None,
        "commit": run.get("provenance", {}).get("commit"),
    }
