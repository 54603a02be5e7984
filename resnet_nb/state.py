"""Everything a checkpoint holds, and the run folder that keeps it safe.

A run folder (``python -m resnet_nb.train --out DIR``) holds:

* ``checkpoint.pt`` - :class:`TrainState` as one dict (weights, optimiser,
  schedule, gradient scaler, random generators, history, config, the
  architecture's signature), written after every epoch;
* ``history.json`` - one row per epoch, readable while the run goes on;
* ``metrics.json`` - written once, when the run has finished.

Every file is written atomically: to a temporary file in the same folder,
flushed to disk (``fsync``), then renamed over the old one. A run killed at any
moment leaves the previous checkpoint intact; a disk that fills during a write
removes its temporary file and says so. Checkpoints load with
``torch.load(..., weights_only=True)``: tensors and primitives only.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from resnet_nb.errors import ArchitectureMismatchError, CheckpointError, RunFolderError

__all__ = [
    "CHECKPOINT",
    "HISTORY",
    "METRICS",
    "atomic_write",
    "atomic_save",
    "atomic_json",
    "load_checkpoint",
    "architecture_signature",
    "check_architecture",
    "TrainState",
    "RunFolder",
    "checkpoint_bytes",
]

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"
METRICS = "metrics.json"
_TMP = ".tmp"


# ----------------------------------------------------------------------------
# atomic files
# ----------------------------------------------------------------------------


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through ``write(file)`` so that it is either complete or untouched.

    The bytes go to ``<path>.tmp<pid>`` beside it, are flushed and fsync'ed, and
    the file is renamed over ``path``. On any failure the temporary file is
    removed; a full disk raises :class:`RunFolderError` saying so (the old
    ``path``, if any, is kept).
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}{_TMP}{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if _is_disk_full(exc):
            raise RunFolderError(
                f"the disk holding {path.parent} is full: {path.name} was not written "
                "(the previous copy, if any, is kept); free some space and resume the run"
            ) from None
        raise


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    # torch.save reports a failed write as a RuntimeError carrying the OS message.
    return isinstance(exc, RuntimeError) and "No space left on device" in str(exc)


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj)`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_json(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    text = json.dumps(obj, indent=2) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


# ----------------------------------------------------------------------------
# reading checkpoints
# ----------------------------------------------------------------------------


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`resnet_nb.train.fit`, safely.

    ``torch.load(..., weights_only=True)``: tensors and primitives only. A
    missing, empty, truncated or foreign file raises :class:`CheckpointError`
    naming the file and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}: give the checkpoint.pt of a run folder written by "
            "python -m resnet_nb.train"
        )
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty: the file was cut off; restore it or train again")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
            pickle.UnpicklingError) as exc:
        # torch's own message is long and may suggest loading unsafely: say it plainly.
        what = ("cut off or damaged" if _looks_like_zip(path) or isinstance(exc, EOFError)
                else "not a torch checkpoint file")
        raise CheckpointError(
            f"{path} cannot be read: it is {what}; restore it from a copy, or start the run "
            "again in a new folder (or with --overwrite)"
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(
            f"{path} is not a checkpoint written by resnet_nb (it has no 'model' entry); "
            "give the checkpoint.pt of a run folder"
        )
    return state


def _looks_like_zip(path: Path) -> bool:
    """Whether ``path`` starts like the zip archives ``torch.save`` writes."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def architecture_signature(model: nn.Module) -> str:
    """A short digest of the module tree and the parameter shapes of ``model``.

    Two models with the same signature load each other's weights meaningfully.
    It tells apart networks whose state dicts have the same keys and shapes but
    compute different things - a plain network and a ResNet with parameter-free
    (option A) shortcuts, say. The classifier ``fc`` is left out: the number of
    classes belongs to the task, and fine-tuning replaces the head anyway.
    """
    h = hashlib.sha256()
    for name, module in model.named_modules():
        if name.split(".")[0] == "fc":
            continue
        h.update(f"{name}:{type(module).__name__}:{module.extra_repr()}\n".encode())
    for name, tensor in model.state_dict().items():
        if name.split(".")[0] != "fc":
            h.update(f"{name}:{tuple(tensor.shape)}\n".encode())
    return h.hexdigest()[:16]


def check_architecture(model: nn.Module, checkpoint: dict[str, Any], *, source: str) -> None:
    """Raise :class:`ArchitectureMismatchError` if ``checkpoint`` is for another network."""
    saved = checkpoint.get("architecture")
    if saved is None:
        return  # written before signatures existed: load_state_dict still checks shapes
    mine = architecture_signature(model)
    if saved.get("signature") != mine:
        name = (checkpoint.get("config") or {}).get("model", "another network")
        raise ArchitectureMismatchError(
            f"{source} holds weights of {name} ({saved.get('class', '?')}), which is not "
            f"the network being loaded ({type(model).__name__}); build the same model, "
            "or use another run folder"
        )


# ----------------------------------------------------------------------------
# the state of a run
# ----------------------------------------------------------------------------


def _rng_state(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        **{name: g.get_state() for name, g in generators.items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    for name, g in generators.items():
        g.set_state(state[name])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainState:
    """Everything a run needs to continue exactly where it stopped.

    Each field is one entry of the checkpoint; :meth:`state_dict` and
    :meth:`load_state_dict` are the only places that list them.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Any
    scaler: Any
    generators: dict[str, torch.Generator]
    config: dict[str, Any]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str]
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch: int = 0
    step: int = 0

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: tensors and primitives only."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": _rng_state(self.generators),
            "epoch": self.epoch,
            "step": self.step,
            "history": list(self.history),
            "config": dict(self.config),
            "stats": {"mean": list(self.mean), "std": list(self.std)},
            "classes": list(self.classes),
            "architecture": {
                "class": type(self.model).__name__,
                "signature": architecture_signature(self.model),
            },
        }

    def load_state_dict(self, state: dict[str, Any], *, source: str = "the checkpoint") -> None:
        """Continue from ``state`` (checks first that it is for this network)."""
        check_architecture(self.model, state, source=source)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ArchitectureMismatchError(
                f"{source} does not fit the network being trained "
                f"({str(exc).splitlines()[0][:160]}); use the same settings or another folder"
            ) from None
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"], self.generators)
        self.history = list(state["history"])
        self.epoch = int(state["epoch"])
        self.step = int(state.get("step", 0))


# ----------------------------------------------------------------------------
# the run folder
# ----------------------------------------------------------------------------


class RunFolder:
    """The folder of one run: checked before training, written atomically during it.

    :meth:`prepare` runs before any training and raises :class:`RunFolderError`
    with the fix when the folder cannot hold the run: the path is a file, it is
    not writable, its disk has no room for a checkpoint, or it already holds a
    run and neither ``resume`` nor ``overwrite`` was asked for.
    """

    def __init__(self, path: str | os.PathLike[str], *, option: str = "out", what: str = "run",
                 files: tuple[str, ...] = (CHECKPOINT, HISTORY, METRICS)) -> None:
        self.path = Path(path)
        self.option = option
        self.what = what  # the word the messages use: "run", "sweep"
        self.files = files  # what a run writes here; a resume starts from the first

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def holds_run(self) -> bool:
        """Whether a finished or partial run is already here."""
        return any((self.path / name).exists() for name in self.files)

    def prepare(self, *, resume: bool, overwrite: bool, needed_bytes: int) -> bool:
        """Check the folder and create it; return whether there is a run to resume."""
        self._check_usable()
        self.clean_temporary_files()
        if resume and not (self.path / self.files[0]).exists():
            raise RunFolderError(
                f"--resume: there is no {self.what} to resume in {self.option}={self.path} "
                f"(no {self.files[0]}); drop --resume to start a new {self.what} there"
            )
        if self.holds_run() and not resume:
            if not overwrite:
                raise RunFolderError(
                    f"{self.option}={self.path} already holds a {self.what}: continue it "
                    "with --resume, choose a new --out folder, or replace it with --overwrite"
                )
            for name in self.files:
                (self.path / name).unlink(missing_ok=True)
        self.check_room(needed_bytes)
        return resume

    def _check_usable(self) -> None:
        p = self.path
        if p.exists() and not p.is_dir():
            raise RunFolderError(
                f"{self.option}={p} is a file, not a folder: choose a folder path for the run"
            )
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(
                f"cannot create the run folder {self.option}={p} ({exc.strerror}): "
                "choose a folder you can write to"
            ) from None
        if not os.access(p, os.W_OK | os.X_OK):
            raise RunFolderError(
                f"the run folder {self.option}={p} is not writable: choose a folder you can "
                "write to, or change its permissions"
            )

    def check_room(self, needed_bytes: int) -> None:
        """Raise :class:`RunFolderError` when the folder's disk has less than ``needed_bytes`` free."""
        free = shutil.disk_usage(self.path).free
        if free < needed_bytes:
            raise RunFolderError(
                f"the disk holding {self.option}={self.path} has {free / 1e6:.1f} MB free but "
                f"a checkpoint needs about {needed_bytes / 1e6:.1f} MB: free some space or "
                "choose a folder on another disk"
            )

    def clean_temporary_files(self) -> list[Path]:
        """Remove temporary files a killed write left behind; return them."""
        leftovers = [p for p in self.path.glob(f"*{_TMP}*") if p.is_file()]
        for p in leftovers:
            p.unlink(missing_ok=True)
        return leftovers


def checkpoint_bytes(model: nn.Module) -> int:
    """About how many bytes a checkpoint of ``model`` takes (weights, momentum, margin)."""
    n = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return 2 * n + 1_000_000
