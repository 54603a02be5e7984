"""Time to accuracy: train with a profile (or a named recipe) and report when it got there.

Prints, per epoch, the wall time and validation accuracy; then the wall time at
which validation accuracy first reached ``--target`` (or that it never did), the
final test accuracy (test split evaluated once, at the end) and the whole run's
wall time. Wall time counts training and the per-epoch validation, from the
start of :func:`resnet_nb.train.fit` (data already decoded and cached).

Any option of ``python -m resnet_nb.train`` is accepted and overrides the profile
and the recipe; ``--target`` takes several values. ``--run DIR`` reads a finished
run folder (``history.json``, ``metrics.json``) instead of training, e.g. a
reference run under ``book/reference_runs``::

    python benchmarks/time_to_accuracy.py --recipe cpu10 --target 0.85
    python benchmarks/time_to_accuracy.py --profile full --target 0.92 0.94 --device cuda
    python benchmarks/time_to_accuracy.py --run book/reference_runs/h100-resnet20-full --target 0.85 0.94

``--anchor anchor/anchor.json`` (written by ``benchmarks/airbench_anchor.py run`` on
the same GPU) adds the anchor's test accuracy and time, the time this run took to
reach that accuracy on its validation split, and the ratio of the two.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from resnet_nb.params import ParameterError
from resnet_nb.report import device_name, load_run, time_to_accuracy
from resnet_nb.train import config_from_args, fit

#: Named recipes: command-line options applied before the caller's own. ``cpu10``
#: is the engine's ``cpu`` profile: ResNet-20 to 85% test accuracy within
#: 10 minutes on a 2-core CPU that computes bf16 natively.
RECIPES: dict[str, list[str]] = {
    "cpu10": ["--profile", "cpu"],
}


def report(history: list[dict], targets: list[float]) -> None:
    """Print each epoch, then when validation accuracy first reached each target."""
    for row in history:
        val = "n/a" if row["val_acc"] is None else f"{row['val_acc']:.4f}"
        print(f"  epoch {row['epoch']:>3}  {row['wall_time_s']:7.1f} s  "
              f"val acc {val}  train acc {row['train_acc']:.4f}  "
              f"{row['images_per_s']:.0f} img/s")
    best = max((r["val_acc"] for r in history if r["val_acc"] is not None), default=float("nan"))
    for target in targets:
        reached = time_to_accuracy(history, target)
        if reached is not None:
            print(f"validation accuracy {target:.2%} first reached at epoch {reached['epoch']}, "
                  f"{reached['wall_time_s']:.1f} s")
        else:
            print(f"validation accuracy {target:.2%} not reached (best {best:.2%})")


def compare_with_anchor(history: list[dict], anchor_file: str) -> None:
    """Print the anchor's accuracy and time, ours to the same accuracy, and the ratio."""
    anchor = json.loads(Path(anchor_file).read_text())
    target, seconds = anchor["accuracy_mean"], anchor["seconds_median"]
    print(f"anchor: {anchor['script']} on {anchor['gpu']}, {target:.2%} test accuracy "
          f"(mean of {anchor['runs']} runs) in {seconds:.2f} s (median)")
    reached = time_to_accuracy(history, min(target, 1.0))
    if reached is None:
        print(f"this run never reached {target:.2%} validation accuracy: no ratio")
    else:
        ours = reached["wall_time_s"]
        print(f"this run reached {target:.2%} validation accuracy at {ours:.1f} s: "
              f"{ours / seconds:.1f}x the anchor's time")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code (2 for bad parameters)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], add_help=False)
    p.add_argument("--target", type=float, nargs="+", default=[0.85],
                   help="validation accuracies to reach")
    p.add_argument("--recipe", choices=sorted(RECIPES), default=None)
    p.add_argument("--run", default=None, help="a finished run folder to read instead of training")
    p.add_argument("--anchor", default=None,
                   help="anchor.json of benchmarks/airbench_anchor.py, to compare with")
    p.add_argument("-h", "--help", action="store_true")
    args, rest = p.parse_known_args(argv)
    if args.help:
        p.print_help()
        print("\nother options: those of python -m resnet_nb.train")
        return 0
    bad = [t for t in args.target if not 0 < t <= 1]
    if bad:
        print(f"error: --target {bad[0]} is invalid: give fractions in (0, 1], e.g. 0.94",
              file=sys.stderr)
        return 2
    if args.run is not None:
        if args.recipe or rest:
            print("error: --run reads a finished run; it takes no training options "
                  f"(got {' '.join(rest) or '--recipe ' + args.recipe})", file=sys.stderr)
            return 2
        try:
            run = load_run(args.run)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        m = run["metrics"]
        print(f"run folder: {args.run}; device: {m.get('device_name') or m.get('device')}; "
              f"torch {m.get('torch')}; precision {m.get('precision')}")
        print(f"command: {m.get('command', '-')}")
        report(run["history"], args.target)
        print(f"final test accuracy: {m['test_acc']:.2%}; whole run {m['wall_time_s']:.1f} s")
        if args.anchor:
            compare_with_anchor(run["history"], args.anchor)
        return 0
    train_argv = (RECIPES[args.recipe] if args.recipe else []) + rest
    try:
        config, progress = config_from_args(train_argv)
        started = time.perf_counter()
        result = fit(config, progress=progress)
    except ParameterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    total = time.perf_counter() - started
    print(f"device: {device_name(result.device)}; torch {torch.__version__}; "
          f"precision {result.precision}")
    print(f"recipe: {args.recipe or '-'}; config: {config.to_dict()}")
    report(result.history, args.target)
    test = result.test["acc"] if result.test else float("nan")
    print(f"final test accuracy: {test:.2%}; whole run {total:.1f} s")
    if args.anchor:
        compare_with_anchor(result.history, args.anchor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
