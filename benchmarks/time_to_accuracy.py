"""Time to accuracy: train with a profile (or a named recipe) and report when it got there.

Prints, per epoch, the wall time and validation accuracy; then the wall time at
which validation accuracy first reached ``--target`` (or that it never did), the
final test accuracy (test split evaluated once, at the end) and the whole run's
wall time. Wall time counts training and the per-epoch validation, from the
start of :func:`resnet_nb.train.fit` (data already decoded and cached).

Any option of ``python -m resnet_nb.train`` is accepted and overrides the profile
and the recipe, e.g.::

    python benchmarks/time_to_accuracy.py --recipe cpu10 --target 0.85
    python benchmarks/time_to_accuracy.py --profile full --target 0.94 --device cuda
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from resnet_nb.params import ParameterError
from resnet_nb.report import device_name
from resnet_nb.train import config_from_args, fit

#: Named recipes: command-line options applied on top of the profile.
RECIPES: dict[str, list[str]] = {
    # ResNet-20 on the whole training split, one-cycle over 15 epochs: about 8 minutes
    # on a quiet 2-core CPU with bf16.
    "cpu10": [
        "--model", "resnet20", "--train-limit", "all", "--epochs", "15", "--batch-size", "256",
        "--lr", "0.4", "--label-smoothing", "0.1", "--schedule", "onecycle",
    ],
}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code (2 for bad parameters)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], add_help=False)
    p.add_argument("--target", type=float, default=0.85, help="validation accuracy to reach")
    p.add_argument("--recipe", choices=sorted(RECIPES), default=None)
    p.add_argument("-h", "--help", action="store_true")
    args, rest = p.parse_known_args(argv)
    if args.help:
        p.print_help()
        print("\nother options: those of python -m resnet_nb.train")
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
    reached = None
    for row in result.history:
        print(f"  epoch {row['epoch']:>3}  {row['wall_time_s']:7.1f} s  "
              f"val acc {row['val_acc']:.4f}  train acc {row['train_acc']:.4f}  "
              f"{row['images_per_s']:.0f} img/s")
        if reached is None and row["val_acc"] is not None and row["val_acc"] >= args.target:
            reached = row
    if reached is not None:
        print(f"validation accuracy {args.target:.2%} first reached at epoch {reached['epoch']}, "
              f"{reached['wall_time_s']:.1f} s")
    else:
        best = max(r["val_acc"] for r in result.history)
        print(f"validation accuracy {args.target:.2%} not reached (best {best:.2%})")
    test = result.test["acc"] if result.test else float("nan")
    print(f"final test accuracy: {test:.2%}; whole run {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
