"""``python -m resnet_nb.train``: parse, validate, train, and say what went wrong in one line.

Every mistake a user can make - a bad option, a run folder that cannot be used,
missing or damaged data, an unreadable checkpoint, a run that diverged - ends
with one ``error: ...`` line on stderr naming the fix, and a non-zero exit code
(2 for a bad setting, 1 for the rest). No traceback, and no earlier run is lost.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from resnet_nb.config import DATASETS, PRECISIONS, SCHEDULES, WARMUPS, TrainConfig
from resnet_nb.errors import ParameterError, ResnetNbError
from resnet_nb.profiles import load_profile

__all__ = ["config_from_args", "main", "train_profile"]

PROG = "python -m resnet_nb.train"


def train_profile(name: str) -> dict[str, Any]:
    """The command-line defaults of profile ``name`` (its ``train`` section)."""
    values = load_profile(name, "train")
    known = set(TrainConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ParameterError(
            f"profile {name!r} sets {', '.join(unknown)} in its train section, which "
            f"{PROG} does not know; remove or correct them"
        )
    return values


def _number(text: str) -> Any:
    """Parse an int or float; leave anything else as text for the validators to name."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _optional_int(text: str) -> Any:
    return None if text.lower() in ("none", "all") else _number(text)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Train a ResNet with the resnet_nb engine (also under torchrun for DDP).",
        argument_default=argparse.SUPPRESS,  # only options given on the command line appear
    )
    add = p.add_argument
    add("--profile", help="defaults to start from: quick (CPU, default) or full (GPU)")
    add("--model", help="e.g. resnet20, resnet56, plain20, resnet18")
    add("--stem", help="imagenet or cifar (resnet18..resnet152 only; default imagenet)")
    add("--dataset", help=f"one of {', '.join(DATASETS)}")
    add("--epochs", type=_number)
    add("--max-steps", type=_optional_int, help="stop after this many iterations")
    add("--batch-size", type=_number, help="global batch size (split among DDP ranks)")
    add("--lr", type=_number, help="peak learning rate")
    add("--schedule", help=f"one of {', '.join(SCHEDULES)}")
    add("--device", help="auto, cpu, cuda, cuda:N or mps")
    add("--seed", type=_number)
    add("--out", help="run folder for checkpoint.pt, history.json, metrics.json")
    add("--resume", action="store_true", help="continue the run in OUT")
    add("--overwrite", action="store_true", help="replace a run already in OUT")
    add("--precision", help=f"one of {', '.join(PRECISIONS)}")
    add("--compile", action=argparse.BooleanOptionalAction)
    add("--channels-last", action=argparse.BooleanOptionalAction)
    add("--train-limit", type=_optional_int, help="train on this many images ('all': every one)")
    add("--val-size", type=_number, help="validation images held out (0: train on all)")
    add("--label-smoothing", type=_number)
    add("--weight-decay", type=_number)
    add("--decay-all", action=argparse.BooleanOptionalAction,
        help="weight decay on BatchNorm and bias parameters too")
    add("--momentum", type=_number)
    add("--nesterov", action=argparse.BooleanOptionalAction)
    add("--padding", type=_number, help="random-crop padding in pixels (0: no crop)")
    add("--padding-mode", help="reflect or zeros")
    add("--flip", action=argparse.BooleanOptionalAction, help="random horizontal flips")
    add("--cutout", type=_number)
    add("--mean", type=_number, nargs="+", help="normalisation mean per channel")
    add("--std", type=_number, nargs="+", help="normalisation std per channel")
    add("--warmup", help=f"one of {', '.join(WARMUPS)}")
    add("--no-progress", action="store_true", help="no progress bars or epoch lines")
    return p


def config_from_args(argv: Sequence[str] | None = None) -> tuple[TrainConfig, bool]:
    """Parse command-line arguments into a validated config (and the progress flag)."""
    given = vars(_parser().parse_args(argv))
    values = train_profile(given.pop("profile", "quick"))
    progress = not given.pop("no_progress", False)
    values.update(given)
    config = TrainConfig(**values)
    config.validate()
    return config, progress


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m resnet_nb.train``; returns the exit code.

    A bad setting exits with code 2, every other user mistake (run folder,
    data, checkpoint, divergence) with code 1; each prints one line.
    """
    from resnet_nb.engine import fit

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        config, progress = config_from_args(args)
        result = fit(config, progress=progress)
    except ParameterError as exc:
        return _fail(exc, 2)
    except ResnetNbError as exc:
        return _fail(exc, 1)
    except KeyboardInterrupt:
        print("\ninterrupted: the last finished epoch is saved; continue with --resume",
              file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) == 0:
        _record_command(result.out, args)
        print(_summary(result), flush=True)
    return 0


def _fail(exc: BaseException, code: int) -> int:
    message = " ".join(str(exc).split())
    print(f"error: {message}", file=sys.stderr)
    return code


def _record_command(out: Path | None, args: list[str]) -> None:
    """Say in the run folder's metrics how the run was started."""
    from resnet_nb.state import METRICS, atomic_json

    if out is None or not (Path(out) / METRICS).is_file():
        return
    metrics = json.loads((Path(out) / METRICS).read_text())
    from resnet_nb.report import portable_text

    command = shlex.join(["python", "-m", "resnet_nb.train", *args])
    metrics["command"] = portable_text(command)
    atomic_json(metrics, Path(out) / METRICS)


def _summary(result: Any) -> str:
    """The final line: ``done: resnet20 3 epochs, val acc 61.20%, test acc 60.85%, ...``."""
    last = result.history[-1] if result.history else {}
    val = f"{last['val_acc']:.2%}" if last.get("val_acc") is not None else "n/a"
    test = f"{result.test['acc']:.2%}" if result.test else "n/a"
    folder = f"; run folder {result.out}" if result.out else ""
    return (
        f"done: {result.config.model} {len(result.history)} epochs, val acc {val}, "
        f"test acc {test}, {result.wall_time_s:.0f}s on {result.device} "
        f"({result.precision}){folder}"
    )
