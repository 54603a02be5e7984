"""The callbacks :func:`resnet_nb.engine.fit` installs itself.

* :class:`EpochLog` prints one line per epoch (with ``progress=True``).
* :class:`Checkpointer` owns the run folder (``config.out``): it checks the
  folder before anything trains, continues a run with ``resume``, writes the
  checkpoint and ``history.json`` after every epoch and ``metrics.json`` at the
  end - each atomically, on rank 0 only.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

from resnet_nb.engine import Callback, Result, Run, precision_name
from resnet_nb.errors import ParameterError
from resnet_nb.report import device_name, portable_text
from resnet_nb.state import (
    HISTORY,
    METRICS,
    RunFolder,
    architecture_signature,
    atomic_json,
    atomic_save,
    checkpoint_bytes,
    load_checkpoint,
)

__all__ = ["EpochLog", "Checkpointer"]


class EpochLog(Callback):
    """Print ``epoch 3/10  train loss 1.234 acc 56.78%  val 60.12%  480 img/s  95s``."""

    def on_epoch_end(self, run: Run) -> None:
        if not run.ctx.main:
            return
        row = run.state.history[-1]
        val = f"  val {row['val_acc']:.2%}" if row["val_acc"] is not None else ""
        print(
            f"epoch {row['epoch']}/{run.epochs}  train loss {row['train_loss']:.3f} "
            f"acc {row['train_acc']:.2%}{val}  {row['images_per_s']:.0f} img/s  "
            f"{row['wall_time_s']:.0f}s",
            flush=True,
        )


class Checkpointer(Callback):
    """Keeps a run in its folder; see the module docstring.

    The folder is checked when the callback is made - before data is loaded or
    anything trains - and raises :class:`resnet_nb.errors.RunFolderError` with
    the fix when it cannot hold the run.
    """

    def __init__(self, out: str | Path, *, resume: bool, overwrite: bool, main: bool) -> None:
        self.folder = RunFolder(out)
        self.main = main
        self.resume = resume
        if main:
            self.folder.prepare(resume=resume, overwrite=overwrite, needed_bytes=0)

    def on_fit_start(self, run: Run) -> None:
        if self.main:
            self.folder.check_room(checkpoint_bytes(run.model))
        if not self.resume:
            return
        source = str(self.folder.checkpoint)
        saved = load_checkpoint(self.folder.checkpoint, map_location=run.device)
        differ = run.config.differences(saved.get("config", {}))
        if differ:
            shown = ", ".join(f"{k}={getattr(run.config, k)!r} (the run: {saved['config'].get(k)!r})"
                              for k in differ)
            raise ParameterError(
                f"--resume: the run in {self.folder.path} was started with other settings: "
                f"{shown}. Resume with the same settings, or start a new run with another --out"
            )
        run.state.load_state_dict(saved, source=source)
        run.resumed = True
        history = run.state.history
        run.wall_offset = history[-1]["wall_time_s"] if history else 0.0
        if run.ctx.main:
            print(f"resuming {self.folder.path} after epoch {run.state.epoch} of {run.epochs}",
                  flush=True)

    def on_epoch_end(self, run: Run) -> None:
        if self.main:
            atomic_save(run.state.state_dict(), self.folder.checkpoint)
            atomic_json(run.state.history, self.folder.path / HISTORY)

    def on_fit_end(self, run: Run, result: Result) -> None:
        if self.main:
            atomic_json(run_metrics(run, result), self.folder.path / METRICS)


def run_metrics(run: Run, result: Result) -> dict[str, Any]:
    """What ``metrics.json`` records about a finished run."""
    history = result.history
    test = result.test or {}
    return {
        "test_loss": test.get("loss"),
        "test_acc": test.get("acc"),
        "final_val_acc": history[-1]["val_acc"] if history else None,
        "best_val_acc": max((r["val_acc"] for r in history if r["val_acc"] is not None),
                            default=None),
        "epochs": run.epochs,
        "steps": run.state.step,
        "wall_time_s": result.wall_time_s,
        "device": str(run.device),
        "device_name": device_name(run.device),
        "precision": precision_name(run.dtype),
        "world_size": run.ctx.world,
        "torch": torch.__version__,
        "torchvision": _torchvision_version(),
        "python": platform.python_version(),
        "train_images": len(run.train),
        "data_source": _portable(getattr(run.train, "source", None)),
        "classes": list(run.state.classes),
        "architecture": {"class": type(run.model).__name__,
                         "signature": architecture_signature(run.model)},
        "config": {**run.config.to_dict(), "out": _portable(run.config.out)},
    }


def _portable(text: str | None) -> str | None:
    """``text`` without the absolute paths of this machine (see portable_text)."""
    return None if text is None else portable_text(str(text))


def _torchvision_version() -> str | None:
    try:
        import torchvision
    except ImportError:  # the engine itself does not need it
        return None
    return str(torchvision.__version__)
