"""The training engine's public face, and ``python -m resnet_nb.train``.

Chapters and scripts import from here; the code lives by job in
:mod:`resnet_nb.config` (the settings), :mod:`resnet_nb.schedules`,
:mod:`resnet_nb.engine` (fit, one train step, evaluate, predict),
:mod:`resnet_nb.callbacks`, :mod:`resnet_nb.state` (checkpoints and the run
folder), :mod:`resnet_nb.distributed` and :mod:`resnet_nb.cli`.

Command line: ``python -m resnet_nb.train --profile quick`` (see
:func:`resnet_nb.cli.main`); ``--help`` lists every option.
"""

from __future__ import annotations

import sys

from resnet_nb.callbacks import Checkpointer, EpochLog
from resnet_nb.cli import config_from_args, main, train_profile
from resnet_nb.config import DATASETS, PRECISIONS, SCHEDULES, TrainConfig
from resnet_nb.engine import (
    Callback,
    Result,
    Run,
    TrainStep,
    evaluate,
    fit,
    limit_train,
    load_splits,
    lr_range_test,
    make_optimizer,
    model_device,
    param_groups,
    precision_name,
    predict_logits,
    resolve_device,
    resolve_precision,
    synthetic_data,
)
from resnet_nb.errors import NonFiniteLossError
from resnet_nb.schedules import PAPER_STEP_SCHEDULE, LRSchedule
from resnet_nb.state import CHECKPOINT, HISTORY, METRICS, load_checkpoint

__all__ = [
    "CHECKPOINT",
    "DATASETS",
    "HISTORY",
    "METRICS",
    "PAPER_STEP_SCHEDULE",
    "PRECISIONS",
    "SCHEDULES",
    "Callback",
    "Checkpointer",
    "EpochLog",
    "LRSchedule",
    "NonFiniteLossError",
    "Result",
    "Run",
    "TrainConfig",
    "TrainStep",
    "config_from_args",
    "evaluate",
    "fit",
    "limit_train",
    "load_checkpoint",
    "load_splits",
    "lr_range_test",
    "main",
    "make_optimizer",
    "model_device",
    "param_groups",
    "precision_name",
    "predict_logits",
    "resolve_device",
    "resolve_precision",
    "synthetic_data",
    "train_profile",
]

if __name__ == "__main__":
    sys.exit(main())
