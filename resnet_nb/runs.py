"""Recorded runs: finished training runs kept with the book, weights included.

A recorded run is a folder ``book/reference_runs/<name>/`` holding

* ``history.json`` and ``metrics.json`` as ``python -m resnet_nb.train`` wrote
  them, with the recording machine's paths made portable;
* ``weights.pt`` - the trained network's ``state_dict`` and nothing else
  (stored in float16 when float32 would exceed :data:`MAX_WEIGHTS_BYTES`);
* ``provenance.json`` - how the run was made: commit, machine, library
  versions, the data file's sha256, the command, the wall time, and the
  weights file's sha256, dtype and normalisation statistics.

:func:`record` writes such a folder from a finished run folder;
:func:`load_reference` rebuilds the network of a recorded run by name, checking
the file's sha256 and loading it with ``weights_only=True``. Command line::

    python -m resnet_nb.runs record runs/strong book/reference_runs/cpu-resnet20-strong
    python -m resnet_nb.runs check cpu-resnet20-strong   # test accuracy vs recorded
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from resnet_nb.errors import (
    CheckpointError,
    ParameterError,
    ResnetNbError,
    RunFolderError,
    WeightsNotFoundError,
)
from resnet_nb.report import display_path, load_run, portable_text
from resnet_nb.state import CHECKPOINT, atomic_json, atomic_save, load_checkpoint

__all__ = [
    "KINDS",
    "MAX_WEIGHTS_BYTES",
    "PROVENANCE",
    "REFERENCE_RUNS",
    "WEIGHTS",
    "check_reference",
    "check_run_name",
    "load_reference",
    "record",
    "recorded_names",
    "sha256_file",
]

#: Where the book keeps its recorded runs (the repository's ``book/reference_runs``).
REFERENCE_RUNS = Path(__file__).resolve().parent.parent / "book" / "reference_runs"
#: Weights larger than this in float32 are stored in float16.
MAX_WEIGHTS_BYTES = 5 * 1024 * 1024
WEIGHTS = "weights.pt"
PROVENANCE = "provenance.json"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------
# recording
# ----------------------------------------------------------------------------


def _stored_weights(state: dict[str, torch.Tensor], max_bytes: int) -> tuple[dict, str]:
    """The state dict as stored: float32, or float16 when float32 would exceed ``max_bytes``."""
    state = {k: v.detach().cpu().clone() for k, v in state.items()}
    size = sum(v.numel() * 4 for v in state.values() if v.is_floating_point())
    if size <= max_bytes:
        return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, "float32"
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}, "float16"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=30,
                             cwd=Path(__file__).resolve().parent, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine(metrics: dict[str, Any]) -> dict[str, Any]:
    """The machine the run was recorded on (this one: record right after the run)."""
    machine: dict[str, Any] = {"device": metrics.get("device_name") or metrics.get("device"),
                               "cpu": _cpu_model(), "cpu_cores": os.cpu_count()}
    if str(metrics.get("device", "")).startswith("cuda") and torch.cuda.is_available():
        machine["gpu"] = torch.cuda.get_device_name()
        try:
            machine["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=30, check=True,
            ).stdout.split("\n")[0].strip()
        except (OSError, subprocess.SubprocessError):
            machine["driver"] = None
    return machine


def _data_record(metrics: dict[str, Any], data_file: Any) -> dict:
    record: dict[str, Any] = {"source": portable_text(str(metrics.get("data_source", "")))}
    files = _as_list(data_file)
    if len(files) == 1:
        record["file"] = display_path(os.path.abspath(files[0]))
        record["sha256"] = sha256_file(files[0])
    elif files:
        record["files"] = _file_records(files)
    return record


def _file_records(files: list[Any]) -> list[dict[str, str]]:
    """Each file's portable path and sha256."""
    return [{"file": display_path(os.path.abspath(f)), "sha256": sha256_file(f)} for f in files]


def _portable_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    out = dict(metrics)
    for key in ("command", "data_source"):
        if isinstance(out.get(key), str):
            out[key] = portable_text(out[key])
    config = dict(out.get("config", {}))
    if isinstance(config.get("out"), str):
        config["out"] = display_path(config["out"])
    out["config"] = config
    return out


def record(
    run_folder: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    data_file: str | os.PathLike[str] | None = None,
    note: str | None = None,
    commit: str | None = None,
    keep_weights: bool = True,
    max_weights_bytes: int = MAX_WEIGHTS_BYTES,
) -> Path:
    """Make ``dest`` a recorded run from the finished run folder ``run_folder``.

    Copies ``history.json`` and ``metrics.json`` (paths made portable), stores
    the checkpoint's weights alone as ``weights.pt`` and writes
    ``provenance.json``. ``data_file`` is the dataset file the run read (its
    sha256 is recorded). Call it on the machine that made the run, from the
    repository it ran from: the machine is read there, and the commit too
    unless ``commit`` names the one the run started from. ``keep_weights=False``
    records the run without its weights (for runs no chapter analyses).
    ``dest`` must not hold a recorded run already.
    """
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise RunFolderError(
            f"{dest} already exists and is not empty: record into a new folder, or remove it first"
        )
    from resnet_nb.sweep import SWEEP

    if (Path(run_folder) / SWEEP).is_file():
        return _record_sweep(run_folder, dest, data_files=_as_list(data_file), note=note,
                             commit=commit)
    run = load_run(run_folder)
    saved = load_checkpoint(Path(run_folder) / CHECKPOINT)
    dest.mkdir(parents=True, exist_ok=True)
    metrics = _portable_metrics(run["metrics"])
    atomic_json(run["history"], dest / "history.json")
    atomic_json(metrics, dest / "metrics.json")
    weights_record = None
    if keep_weights:
        weights, dtype = _stored_weights(saved["model"], max_weights_bytes)
        atomic_save(weights, dest / WEIGHTS)
        weights_record = {
            "file": WEIGHTS,
            "sha256": sha256_file(dest / WEIGHTS),
            "dtype": dtype,
            "bytes": (dest / WEIGHTS).stat().st_size,
            "model": metrics.get("config", {}).get("model"),
            "stem": metrics.get("config", {}).get("stem"),
            "in_channels": int(saved["model"]["conv1.weight"].shape[1]),
            "classes": list(saved.get("classes") or metrics.get("classes") or []),
            "mean": [float(m) for m in saved["stats"]["mean"]],
            "std": [float(s) for s in saved["stats"]["std"]],
        }
    commit, dirty = _commit(commit)
    provenance = {
        "recorded": _dt.date.today().isoformat(),
        "commit": commit,
        "machine": _machine(metrics),
        "python": metrics.get("python"),
        "torch": metrics.get("torch"),
        "torchvision": metrics.get("torchvision"),
        "data": _data_record(metrics, data_file),
        "command": metrics.get("command"),
        "wall_time_s": metrics.get("wall_time_s"),
        "test_acc": metrics.get("test_acc"),
        "weights": weights_record,
        "timing": ("wall_time_s counts from the start of training: every epoch with its "
                   "validation and checkpoint; decoding the dataset (cached) is not included"),
    }
    _finish(provenance, dest, dirty=dirty, note=note)
    return dest


def _as_list(data_file: Any) -> list[Any]:
    if data_file is None:
        return []
    return list(data_file) if isinstance(data_file, (list, tuple)) else [data_file]


def _commit(commit: str | None) -> tuple[str | None, str | None]:
    """(commit, uncommitted changes of the package or None when ``commit`` was given)."""
    if commit is not None:  # the run started from this commit: name it in full
        return _git("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}") or commit, None
    # The run was made from this checkout, as it is now; only the package's own
    # files decide what the run computed.
    package = str(Path(__file__).resolve().parent)
    return _git("rev-parse", "HEAD"), _git("status", "--porcelain", "--", package)


def _finish(provenance: dict[str, Any], dest: Path, *, dirty: str | None,
            note: str | None) -> None:
    if dirty is not None:
        provenance["package_changed_since_commit"] = bool(dirty)
    if note:
        provenance["note"] = note
    atomic_json(provenance, dest / PROVENANCE)


def _record_sweep(folder: str | os.PathLike[str], dest: Path, *, data_files: list[Any],
                  note: str | None, commit: str | None) -> Path:
    """Record a finished fine-tuning sweep (:mod:`resnet_nb.sweep`): its settings, every
    cell and the provenance; no weights."""
    from resnet_nb.sweep import RESULTS, SWEEP, load_sweep

    sweep = load_sweep(folder)
    info = sweep["sweep"]
    expected = len(info["config"]["seeds"]) * len(info["config"]["budgets"]) * len(
        info["config"]["strategies"])
    if not info.get("finished") or len(sweep["results"]) != expected:
        raise RunFolderError(
            f"the sweep in {display_path(Path(folder).absolute())} is not finished "
            f"({len(sweep['results'])} of {expected} cells): finish it with "
            "python -m resnet_nb.sweep ... --resume, then record it"
        )
    dest.mkdir(parents=True, exist_ok=True)
    info = dict(info)
    for key in ("command", "source"):
        if isinstance(info.get(key), str):
            info[key] = portable_text(info[key])
    atomic_json(info, dest / SWEEP)
    atomic_json(sweep["results"], dest / RESULTS)
    commit, dirty = _commit(commit)
    config = info["config"]
    provenance = {
        "kind": "sweep",
        "recorded": _dt.date.today().isoformat(),
        "commit": commit,
        "machine": _machine(info),
        "python": info.get("python"),
        "torch": info.get("torch"),
        "torchvision": info.get("torchvision"),
        "source_run": config.get("reference_run") if config.get("source") == "recorded"
        else None,
        "source": info.get("source"),
        "data": {
            "source": config.get("target"),
            "files": _file_records(data_files),
        },
        "command": info.get("command"),
        "cells": len(sweep["results"]),
        "wall_time_s": info.get("wall_time_s"),
        "weights": None,
        "timing": ("wall_time_s is the sum of the cells' wall times: each cell's training "
                   "and its one evaluation on the test images"),
    }
    _finish(provenance, dest, dirty=dirty, note=note)
    return dest


# ----------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------


KINDS = ("training", "sweep")


def recorded_names(root: str | os.PathLike[str] | None = None, *,
                   kind: str | None = None) -> list[str]:
    """The names of the recorded runs under ``root`` (default :data:`REFERENCE_RUNS`).

    ``kind="training"`` lists training runs only (``python -m resnet_nb.train``),
    ``kind="sweep"`` fine-tuning sweeps only (``python -m resnet_nb.sweep``).
    """
    base = Path(root) if root is not None else REFERENCE_RUNS
    if not base.is_dir():
        return []
    names = sorted(p.name for p in base.iterdir() if (p / PROVENANCE).is_file())
    if kind is None:
        return names
    return [n for n in names
            if json.loads((base / n / PROVENANCE).read_text()).get("kind", "training") == kind]


def check_run_name(parameter: str, value: Any, root: str | os.PathLike[str] | None = None, *,
                   kind: str | None = None) -> str:
    """``value`` if it names a recorded run (of ``kind``), else a :class:`ParameterError`
    listing them."""
    known = recorded_names(root, kind=kind)
    if not isinstance(value, str) or value not in known:
        base = Path(root) if root is not None else REFERENCE_RUNS
        what = {"training": "recorded training run", "sweep": "recorded sweep"}.get(
            str(kind), "recorded run")
        raise ParameterError(
            f"parameter {parameter}={value!r} is invalid: it names no {what} in "
            f"{display_path(base.absolute())} ({what}s: {', '.join(known) or 'none'}); "
            "pass one of those names, or record the run with python -m resnet_nb.runs record"
        )
    return value


def _run_folder(name: str, root: str | os.PathLike[str] | None) -> Path:
    check_run_name("name", name, root)
    return (Path(root) if root is not None else REFERENCE_RUNS) / name


def load_reference(name: str, *, root: str | os.PathLike[str] | None = None) -> Any:
    """The network of the recorded run ``name``, as a :class:`resnet_nb.finetune.Source`.

    The model is rebuilt from the run's recorded configuration and loaded in
    float32 from ``weights.pt`` with ``weights_only=True``, after checking the
    file's sha256 against ``provenance.json``. ``mean``/``std`` are the
    normalisation it was trained with. A missing or altered file raises
    :class:`WeightsNotFoundError` / :class:`CheckpointError` naming the run
    and how to restore it.
    """
    from resnet_nb.finetune import Source, load_weights
    from resnet_nb.models import build_model

    folder = _run_folder(name, root)
    provenance = json.loads((folder / PROVENANCE).read_text())
    info = provenance.get("weights")
    shown = display_path(folder.absolute())
    restore = (f"restore it from the repository (git checkout -- {shown}/{WEIGHTS}) or "
               "record the run again")
    if provenance.get("kind") == "sweep":
        raise ParameterError(
            f"recorded run {name!r} is a fine-tuning sweep, which has no network to load: "
            "read it with resnet_nb.sweep.load_sweep, or name a training run"
        )
    if not info:
        raise WeightsNotFoundError(
            f"recorded run {name!r} keeps no weights (its {PROVENANCE} has no 'weights' entry): "
            "only runs recorded with python -m resnet_nb.runs record can be loaded"
        )
    file = folder / info["file"]
    if not file.is_file():
        raise WeightsNotFoundError(f"recorded run {name!r} has no {info['file']}: {restore}")
    digest = sha256_file(file)
    if digest != info["sha256"]:
        raise CheckpointError(
            f"{info['file']} of recorded run {name!r} has sha256 {digest[:12]}..., but its "
            f"{PROVENANCE} records {info['sha256'][:12]}...: the file was altered or damaged; "
            f"{restore}"
        )
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable file gets the same plain message
        raise CheckpointError(f"{info['file']} of recorded run {name!r} cannot be read: "
                              f"{restore}") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    classes = list(info["classes"])
    model = build_model(info["model"], num_classes=len(classes),
                        in_channels=int(info.get("in_channels", 3)), stem=info.get("stem"))
    notes = load_weights(model, state, source=f"recorded run {name!r}")
    if notes:
        raise CheckpointError(f"recorded run {name!r} does not fit its recorded model: "
                              f"{'; '.join(notes)}")
    acc = provenance.get("test_acc")
    return Source(
        model=model.eval(),
        architecture=info["model"],
        description=(f"recorded run {name}: {info['model']}"
                     + (f", test accuracy {acc:.2%}" if acc is not None else "")),
        mean=tuple(info["mean"]),
        std=tuple(info["std"]),
        image_size=32,
        classes=classes,
        stem=info.get("stem"),
    )


def check_reference(name: str, *, root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Evaluate recorded run ``name``'s stored weights on its test split.

    Returns ``{"recorded": ..., "measured": ..., "n": ...}`` (test accuracies as
    fractions), evaluated on the CPU in the precision the run evaluated in
    (bf16 autocast or fp32, as its ``metrics.json`` records).
    """
    from resnet_nb import data
    from resnet_nb.engine import evaluate

    source = load_reference(name, root=root)
    metrics = json.loads((_run_folder(name, root) / "metrics.json").read_text())
    dataset = metrics.get("config", {}).get("dataset", "cifar10")
    loaders = {"cifar10": data.load_cifar10, "fashion_mnist": data.load_fashion_mnist}
    if dataset not in loaders:
        raise ResnetNbError(f"recorded run {name!r} trained on {dataset!r}, which has no test split")
    precision = metrics.get("precision") if metrics.get("precision") in ("bf16", "fp32") \
        else "fp32"
    config = metrics.get("config", {})
    result = evaluate(source.model, loaders[dataset]("test"), mean=source.mean, std=source.std,
                      precision=precision, channels_last=bool(config.get("channels_last")),
                      batch_size=max(int(config.get("batch_size", 500)), 500))
    return {"recorded": metrics.get("test_acc"), "measured": result["acc"], "n": result["n"]}


# ----------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m resnet_nb.runs record RUN DEST`` / ``check NAME``; returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m resnet_nb.runs", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="keep a finished run folder as a recorded run")
    rec.add_argument("run", help="the run folder (--out of python -m resnet_nb.train)")
    rec.add_argument("dest", help="the new folder, e.g. book/reference_runs/NAME")
    rec.add_argument("--data-file", default=None, nargs="+",
                     help="the dataset file(s) the run read (their sha256 is recorded)")
    rec.add_argument("--note", default=None, help="a sentence on why the run was made")
    rec.add_argument("--no-weights", dest="keep_weights", action="store_false",
                     help="record history, metrics and provenance only")
    rec.add_argument("--commit", default=None,
                     help="the commit the run started from (default: the current one)")
    chk = sub.add_parser("check", help="test accuracy of a recorded run's stored weights")
    chk.add_argument("name")
    chk.add_argument("--root", default=None, help="folder of recorded runs")
    args = p.parse_args(argv)
    try:
        if args.command == "record":
            dest = record(args.run, args.dest, data_file=args.data_file, note=args.note,
                          commit=args.commit, keep_weights=args.keep_weights)
            print(f"recorded {display_path(dest.absolute())}")
        else:
            r = check_reference(args.name, root=args.root)
            print(f"{args.name}: test accuracy {r['measured']:.2%} of {r['n']:,} images "
                  f"(recorded {r['recorded']:.2%})")
    except (ResnetNbError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
