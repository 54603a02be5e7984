"""Fine-tuning sweeps: every strategy at every label budget, over several seeds.

One transfer run (:func:`resnet_nb.finetune.transfer`) measures one strategy at
one label budget with one seed. Which strategy is best at a budget is only
known once the spread over seeds is: a seed draws the labelled images, the new
head, the batch order and the augmentation. A sweep runs every (seed, budget,
strategy) cell and writes each result to ``results.json`` in its folder as soon
as it is measured, so a killed sweep resumes where it stopped (``--resume``);
:func:`summarise` turns the cells into the mean and standard deviation over
seeds, and :func:`clear_leads` names a best strategy only where the intervals
do not overlap. Command line::

    python -m resnet_nb.sweep --reference-run cpu-resnet20-strong \\
        --budgets 10 100 1000 --seeds 0 1 2 3 4 --out runs/finetune-sweep
    python -m resnet_nb.runs record runs/finetune-sweep book/reference_runs/NAME
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import platform
import shlex
import statistics
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_nb import finetune as ft
from resnet_nb.errors import ParameterError, ResnetNbError
from resnet_nb.params import check_choice, check_positive_float, check_positive_int
from resnet_nb.report import display_path, portable_text
from resnet_nb.state import RunFolder, atomic_json

__all__ = [
    "PEAK_LRS",
    "SOURCES",
    "SweepConfig",
    "clear_leads",
    "epochs_for_budget",
    "leaders",
    "load_sweep",
    "main",
    "run_sweep",
    "summarise",
]

PROG = "python -m resnet_nb.sweep"
SWEEP = "sweep.json"
RESULTS = "results.json"
SOURCES = ("recorded", "checkpoint", "imagenet")
#: The peak learning rate of each strategy (of the head, for ``discriminative``).
PEAK_LRS: dict[str, float] = {
    "scratch": 0.1,
    "linear_probe": 0.5,
    "full": 0.05,
    "discriminative": 0.1,
    "gradual": 0.05,
}


def epochs_for_budget(train_images: int, labels_per_class: int, classes: int) -> int:
    """Epochs that make a run see about ``train_images`` images (at least one epoch).

    Every cell of a sweep then costs about the same: a larger budget means more
    distinct images but fewer passes over them.
    """
    return max(1, train_images // (labels_per_class * classes))


@dataclass
class SweepConfig:
    """Everything that decides a sweep's numbers (what a resume must not change)."""

    source: str = "recorded"  # "recorded", "checkpoint" or "imagenet"
    reference_run: str | None = "cpu-resnet20-strong"  # source="recorded"
    checkpoint: str | None = None  # source="checkpoint": a run folder's checkpoint.pt
    imagenet_arch: str = "resnet18"  # source="imagenet"
    imagenet_weights: str | None = None
    imagenet_size: int = 224
    target: str = "fashion_mnist"
    target_folder: str | None = None
    strategies: list[str] = field(default_factory=lambda: list(ft.STRATEGIES))
    budgets: list[int] = field(default_factory=lambda: [10, 100, 1000])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    train_images: int = 10_000  # images each run trains on (see epochs_for_budget)
    test_images: int | None = None  # None: the whole test split, the same for every cell
    lrs: dict[str, float] = field(default_factory=lambda: dict(PEAK_LRS))
    lr_decay: float = 0.5
    batch_size: int = 32
    weight_decay: float = 5e-4
    precision: str = "auto"
    device: str = "auto"

    def validate(self) -> SweepConfig:
        """Raise :class:`ParameterError` naming the first bad setting and its fix."""
        check_choice("source", self.source, SOURCES)
        if self.source == "recorded":
            from resnet_nb.runs import check_run_name

            check_run_name("reference_run", self.reference_run, kind="training")
        if self.source == "checkpoint" and not self.checkpoint:
            raise ParameterError(
                "parameter checkpoint=None is invalid: source='checkpoint' needs the path of a "
                "checkpoint.pt written by python -m resnet_nb.train"
            )
        check_choice("target", self.target, ft.TARGETS)
        if not self.strategies or len(set(self.strategies)) != len(self.strategies):
            raise ParameterError(
                f"parameter strategies={self.strategies!r} is invalid: give each of "
                f"{', '.join(ft.STRATEGIES)} at most once"
            )
        for s in self.strategies:
            check_choice("strategies", s, ft.STRATEGIES)
        for name in ("budgets", "seeds"):
            values = getattr(self, name)
            if not values or len(set(values)) != len(values):
                raise ParameterError(
                    f"parameter {name}={values!r} is invalid: give one or more distinct values"
                )
        for k in self.budgets:
            check_positive_int("budgets", k)
        for s in self.seeds:
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                raise ParameterError(f"parameter seeds={self.seeds!r} is invalid: use ints >= 0")
        check_positive_int("train_images", self.train_images)
        if self.test_images is not None:
            check_positive_int("test_images", self.test_images)
        missing = sorted(set(self.strategies) - set(self.lrs))
        if missing:
            raise ParameterError(
                f"parameter lrs={self.lrs!r} is invalid: it has no peak rate for "
                f"{', '.join(missing)}"
            )
        for name in self.strategies:
            check_positive_float(f"lrs[{name!r}]", self.lrs[name])
        if not 0 < self.lr_decay <= 1:
            raise ParameterError(
                f"parameter lr_decay={self.lr_decay!r} is invalid: it must be in (0, 1]"
            )
        check_positive_int("batch_size", self.batch_size)
        from resnet_nb.config import TrainConfig

        TrainConfig(precision=self.precision, device=self.device,
                    weight_decay=self.weight_decay).validate()
        return self

    def cells(self) -> list[tuple[int, int, str]]:
        """(seed, labels per class, strategy) of every run, in the order they run."""
        return [(s, k, st) for s in self.seeds for k in self.budgets for st in self.strategies]


def _load_source(config: SweepConfig) -> ft.Source:
    if config.source == "recorded":
        from resnet_nb.runs import load_reference

        return load_reference(str(config.reference_run))
    if config.source == "checkpoint":
        return ft.load_checkpoint_source(str(config.checkpoint))
    return ft.load_imagenet_source(config.imagenet_arch, path=config.imagenet_weights,
                                   image_size=config.imagenet_size)


def _prepare(out: Path, config: SweepConfig, *, resume: bool, overwrite: bool) -> list[dict]:
    """Check the sweep folder (:class:`resnet_nb.state.RunFolder`); return the cells
    already measured when resuming."""
    folder = RunFolder(out, what="sweep", files=(SWEEP, RESULTS))
    if not folder.prepare(resume=resume, overwrite=overwrite, needed_bytes=1_000_000):
        return []
    saved = json.loads((out / SWEEP).read_text())["config"]
    now = dataclasses.asdict(config)
    changed = [f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in now if saved.get(k) != now[k]]
    if changed:
        raise ParameterError(
            f"the sweep in {display_path(out)} was started with other settings ("
            + "; ".join(changed) + "): resume with the same settings, or start a new --out"
        )
    results = out / RESULTS
    return json.loads(results.read_text()) if results.is_file() else []


def run_sweep(
    config: SweepConfig,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    command: str | None = None,
    say: Callable[[str], None] | None = print,
) -> list[dict[str, Any]]:
    """Run every cell of ``config`` not yet in ``out``; return all cells.

    Each cell is a dict with the strategy, ``labels_per_class``, ``seed``,
    ``epochs``, ``train_images``, ``test_images``, ``test_acc``, ``test_loss``
    and ``wall_time_s``. ``results.json`` is rewritten atomically after each
    cell, and ``sweep.json`` (the settings, the command, the device and the
    library versions) at the start and the end.
    """
    import torch
    import torchvision

    from resnet_nb.engine import limit_train, resolve_device
    from resnet_nb.report import device_name

    config.validate()
    out = Path(out)
    done = _prepare(out, config, resume=resume, overwrite=overwrite)
    source = _load_source(config)
    train, test = ft.load_target(config.target, folder=config.target_folder,
                                 size=source.image_size, seed=0)
    test = limit_train(test, config.test_images, seed=0)
    classes = len(train.classes)
    smallest = int(torch.bincount(train.labels, minlength=classes).min())
    if max(config.budgets) > smallest:
        raise ParameterError(
            f"parameter budgets={config.budgets!r} is invalid: the smallest class of the "
            f"target's training split has {smallest} images; keep every budget at most that"
        )
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "config": dataclasses.asdict(config),
        "command": portable_text(command) if command else None,
        "source": portable_text(source.description),
        "target_train_images": len(train),
        "test_images": len(test),
        "classes": list(train.classes),
        "device": str(resolve_device(config.device)),
        "device_name": device_name(resolve_device(config.device)),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "finished": False,
    }
    atomic_json(info, out / SWEEP)
    results = list(done)
    measured = {(c["seed"], c["labels_per_class"], c["strategy"]) for c in results}
    todo = [cell for cell in config.cells() if cell not in measured]
    if say and measured:
        say(f"resuming {display_path(out)}: {len(measured)} of {len(config.cells())} "
            "cells measured")
    for i, (seed, k, strategy) in enumerate(todo, 1):
        epochs = epochs_for_budget(config.train_images, k, classes)
        r = ft.transfer(source, strategy, train, test, labels_per_class=k, epochs=epochs,
                        batch_size=config.batch_size, lr=config.lrs[strategy],
                        lr_decay=config.lr_decay, weight_decay=config.weight_decay,
                        precision=config.precision, device=config.device, seed=seed)
        results.append({
            "strategy": strategy, "labels_per_class": k, "seed": seed, "epochs": epochs,
            "train_images": r.train_images, "test_images": len(test),
            "test_acc": r.test_acc, "test_loss": r.test_loss,
            "wall_time_s": round(r.wall_time_s, 2),
        })
        atomic_json(results, out / RESULTS)
        if say:
            say(f"[{len(results)}/{len(config.cells())}] seed {seed} k={k:<5} "
                f"{strategy:>14}  test acc {r.test_acc:.2%}  ({r.wall_time_s:.0f} s)")
    info["finished"] = True
    info["wall_time_s"] = round(sum(c["wall_time_s"] for c in results), 1)
    atomic_json(info, out / SWEEP)
    return results


def summarise(cells: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Mean, standard deviation (over seeds, n-1) and test-set standard error per cell.

    Keys are (strategy, labels per class); values hold ``n`` (seeds), ``mean``,
    ``sd`` (``None`` with one seed), ``accs`` and ``test_se``: the standard
    error :math:`\\sqrt{p(1-p)/n_{test}}` that the test set alone puts on one
    accuracy ``p``, at the mean.
    """
    groups: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for c in cells:
        groups.setdefault((c["strategy"], int(c["labels_per_class"])), []).append(c)
    summary = {}
    for key, group in groups.items():
        accs = [float(c["test_acc"]) for c in sorted(group, key=lambda c: c["seed"])]
        mean = statistics.fmean(accs)
        n_test = int(group[0]["test_images"])
        summary[key] = {
            "n": len(accs), "mean": mean,
            "sd": statistics.stdev(accs) if len(accs) > 1 else None,
            "accs": accs, "test_images": n_test,
            "test_se": math.sqrt(mean * (1 - mean) / n_test),
        }
    return summary


def leaders(summary: Mapping[tuple[str, int], Mapping[str, Any]], budget: int) -> list[str]:
    """The strategies at ``budget`` that the seeds cannot rank below the best, best first.

    The best has the highest mean; another strategy is among the leaders when its
    interval, mean +- one standard deviation over seeds, overlaps the best's. With
    one seed (no standard deviation) every strategy is a leader: nothing is ranked.
    """
    rows = {s: v for (s, k), v in summary.items() if k == budget}
    if len(rows) < 2:
        raise ValueError(f"budget {budget} has fewer than two strategies in the sweep")
    ranked = sorted(rows, key=lambda s: rows[s]["mean"], reverse=True)
    if any(v["sd"] is None for v in rows.values()):
        return ranked
    low = rows[ranked[0]]["mean"] - rows[ranked[0]]["sd"]
    return [s for s in ranked if rows[s]["mean"] + rows[s]["sd"] >= low]


def clear_leads(
    summary: Mapping[tuple[str, int], Mapping[str, Any]], budget: int
) -> tuple[str, str, bool]:
    """(best, runner-up, clear) at ``budget``: clear when mean - sd of the best lies
    above mean + sd of every other strategy (the intervals do not overlap)."""
    ranked = sorted((s for s, k in summary if k == budget),
                    key=lambda s: summary[s, budget]["mean"], reverse=True)
    group = leaders(summary, budget)
    return ranked[0], ranked[1], group == [ranked[0]]


def load_sweep(folder: str | Path) -> dict[str, Any]:
    """``{"name", "sweep", "results", "provenance"}`` of a sweep folder (recorded or not)."""
    path = Path(folder)
    record: dict[str, Any] = {"name": path.name}
    for key, name, required in (("sweep", SWEEP, True), ("results", RESULTS, True),
                                ("provenance", "provenance.json", False)):
        file = path / name
        if not file.is_file():
            if required:
                raise FileNotFoundError(
                    f"{display_path(file.absolute())} is missing: {path.name} is not a sweep "
                    f"folder of {PROG}"
                )
            record[key] = {}
            continue
        record[key] = json.loads(file.read_text())
    return record


# ----------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------


def _lr_pair(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not STRATEGY=RATE, e.g. full=0.05"
        ) from None


def _parser() -> argparse.ArgumentParser:
    d = SweepConfig()
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    add = p.add_argument
    add("--source", default=d.source, help=f"one of {', '.join(SOURCES)}")
    add("--reference-run", default=d.reference_run, help="source=recorded: the run's name")
    add("--checkpoint", default=None, help="source=checkpoint: a checkpoint.pt")
    add("--imagenet-arch", default=d.imagenet_arch)
    add("--imagenet-weights", default=None, help="source=imagenet: a local .pth")
    add("--imagenet-size", type=int, default=d.imagenet_size)
    add("--target", default=d.target, help=f"one of {', '.join(ft.TARGETS)}")
    add("--target-folder", default=None, help="target=folder: one subfolder per class")
    add("--strategies", nargs="+", default=d.strategies)
    add("--budgets", nargs="+", type=int, default=d.budgets, help="labelled images per class")
    add("--seeds", nargs="+", type=int, default=d.seeds)
    add("--train-images", type=int, default=d.train_images,
        help="images each run trains on (epochs = this / labelled images)")
    add("--test-images", default="all", help="test images per evaluation ('all': the split)")
    add("--lr", type=_lr_pair, action="append", default=[], metavar="STRATEGY=RATE",
        help="peak rate of one strategy (repeat); defaults: "
        + ", ".join(f"{k}={v}" for k, v in PEAK_LRS.items()))
    add("--lr-decay", type=float, default=d.lr_decay)
    add("--batch-size", type=int, default=d.batch_size)
    add("--weight-decay", type=float, default=d.weight_decay)
    add("--precision", default=d.precision)
    add("--device", default=d.device)
    add("--out", required=True, help="the sweep folder (sweep.json, results.json)")
    add("--resume", action="store_true", help="measure the cells missing in OUT")
    add("--overwrite", action="store_true", help="replace the sweep in OUT")
    return p


def config_from_args(argv: Sequence[str]) -> tuple[SweepConfig, argparse.Namespace]:
    """The validated :class:`SweepConfig` of a command line, and the parsed options."""
    args = _parser().parse_args(argv)
    lrs = dict(PEAK_LRS)
    lrs.update(dict(args.lr))
    test = args.test_images
    if test.lower() in ("all", "none"):
        test_images = None
    elif test.isdigit():
        test_images = int(test)
    else:
        raise ParameterError(
            f"parameter test_images={test!r} is invalid: give a count or 'all'"
        )
    config = SweepConfig(
        source=args.source, reference_run=args.reference_run, checkpoint=args.checkpoint,
        imagenet_arch=args.imagenet_arch, imagenet_weights=args.imagenet_weights,
        imagenet_size=args.imagenet_size, target=args.target, target_folder=args.target_folder,
        strategies=list(args.strategies), budgets=list(args.budgets), seeds=list(args.seeds),
        train_images=args.train_images, test_images=test_images,
        lrs={s: lrs[s] for s in args.strategies if s in lrs},
        lr_decay=args.lr_decay, batch_size=args.batch_size, weight_decay=args.weight_decay,
        precision=args.precision, device=args.device,
    )
    return config.validate(), args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m resnet_nb.sweep``; returns the exit code.

    A bad setting exits with 2, any other user mistake with 1, each with one
    ``error:`` line; an interrupted sweep keeps every measured cell.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        config, opts = config_from_args(args)
        cells = run_sweep(config, opts.out, resume=opts.resume, overwrite=opts.overwrite,
                          command=f"{PROG} {shlex.join(args)}")
    except ParameterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ResnetNbError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: every measured cell is saved; continue with --resume",
              file=sys.stderr)
        return 130
    summary = summarise(cells)
    for k in config.budgets:
        row = "  ".join(
            f"{s} {summary[s, k]['mean']:.1%}"
            + (f" +- {summary[s, k]['sd']:.1%}" if summary[s, k]["sd"] is not None else "")
            for s in config.strategies
        )
        print(f"k={k}: {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
