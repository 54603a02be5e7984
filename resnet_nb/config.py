"""What defines a training run: :class:`TrainConfig` and the checks of its fields.

A config holds settings only (never data or tensors), so it is saved in every
checkpoint as a dict of primitives and compared when a run is resumed.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from resnet_nb.augment import PADDING_MODES
from resnet_nb.errors import ParameterError
from resnet_nb.params import (
    check_choice,
    check_device,
    check_fraction,
    check_positive_float,
    check_positive_int,
)

__all__ = [
    "DATASETS",
    "PRECISIONS",
    "SCHEDULES",
    "WARMUPS",
    "RESUME_FREE",
    "TrainConfig",
]

SCHEDULES = ("onecycle", "cosine", "step", "constant")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DATASETS = ("cifar10", "fashion_mnist", "synthetic")
WARMUPS = ("auto", "on", "off")

#: Fields that may differ between a run and its resumption.
RESUME_FREE = ("resume", "overwrite", "device", "out")


@dataclass
class TrainConfig:
    """Everything that defines a training run (and nothing about the data values).

    Optimisation: SGD with ``momentum`` (``nesterov``), ``weight_decay`` on
    weights only (on every parameter, BatchNorm scales and shifts and biases
    too, with ``decay_all``), a ``batch_size`` global batch, ``label_smoothing``. ``lr`` is
    the peak of ``schedule``: ``"onecycle"`` (default), ``"cosine"``,
    ``"step"`` (the paper's /10 at 1/2 and 3/4 of the run) or ``"constant"``.
    ``epochs`` passes over the training set, cut short at ``max_steps``
    iterations when that is set (the schedule then spans ``max_steps``).

    ``warmup`` is the paper's ResNet-110 warm-up (lr/10 until the training
    error falls below 80%); ``"auto"`` turns it on for the step schedule on
    networks 110 or more layers deep, counted on the built model.

    Data: ``val_size`` images of the training split are held out for
    validation (fixed seed, so every run validates on the same images; 0
    trains on every image and validates on none); ``train_limit`` trains on a seeded subset of the rest. Augmentation on the
    device: random crops after ``padding`` pixels of ``padding_mode`` padding
    (0: none), horizontal ``flip``, ``cutout`` (side of the square, 0: none).
    Inputs are normalised with ``mean``/``std``; ``None`` (default) uses the
    training split's own channel statistics.

    ``precision="auto"`` picks bf16 autocast on GPUs that support it and on CPUs
    with bf16 matrix units (AMX), fp16 with a gradient scaler on other CUDA
    GPUs, else fp32. ``compile`` wraps the network in ``torch.compile`` (on one
    CUDA device in its CUDA-graph mode). ``stem`` (``"imagenet"`` or
    ``"cifar"``) applies to the ImageNet family (``resnet18`` .. ``resnet152``).

    Run folder: ``out`` holds the checkpoint, history and metrics (``None``
    keeps everything in memory); ``resume`` continues the run in ``out``;
    ``overwrite`` replaces a run already there.
    """

    model: str = "resnet20"
    stem: str | None = None
    dataset: str = "cifar10"
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 128
    lr: float = 0.2
    schedule: str = "onecycle"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    decay_all: bool = False
    label_smoothing: float = 0.0
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    device: str = "auto"
    seed: int = 0
    val_size: int = 5000
    train_limit: int | None = None
    padding: int = 4
    padding_mode: str = "reflect"
    flip: bool = True
    cutout: int = 0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    warmup: str = "auto"
    out: str | None = None
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        # Lists (from YAML, JSON or a checkpoint) become tuples, so configs compare.
        for name in ("mean", "std"):
            value = getattr(self, name)
            if isinstance(value, list):
                setattr(self, name, tuple(value))

    def validate(self, *, model_names: Sequence[str] | None = None) -> TrainConfig:
        """Check every field; raise :class:`ParameterError` naming the first bad one."""
        self._validate_model(model_names)
        self._validate_optimisation()
        self._validate_data()
        self._validate_run_folder()
        return self

    def _validate_model(self, model_names: Sequence[str] | None) -> None:
        from resnet_nb.models import IMAGENET_MODEL_NAMES, MODEL_NAMES, STEMS

        check_choice("model", self.model, model_names or MODEL_NAMES)
        if self.stem is not None:
            check_choice("stem", self.stem, STEMS)
            if self.model not in IMAGENET_MODEL_NAMES:
                raise ParameterError(
                    f"parameter stem={self.stem!r} is invalid for model={self.model!r}: "
                    f"a stem applies only to {', '.join(IMAGENET_MODEL_NAMES)}; "
                    "leave it unset (None) for the CIFAR networks"
                )
        check_choice("precision", self.precision, PRECISIONS)
        check_bool("channels_last", self.channels_last)
        check_bool("compile", self.compile)
        check_device("device", self.device)

    def _validate_optimisation(self) -> None:
        check_positive_int("epochs", self.epochs)
        if self.max_steps is not None:
            check_positive_int("max_steps", self.max_steps)
        check_positive_int("batch_size", self.batch_size)
        check_positive_float("lr", self.lr)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_fraction("momentum", self.momentum)
        check_bool("nesterov", self.nesterov)
        if self.nesterov and self.momentum == 0:
            raise ParameterError(
                "parameter nesterov=True is invalid: Nesterov momentum needs momentum > 0; "
                "set nesterov=False or a momentum such as 0.9"
            )
        check_nonnegative("weight_decay", self.weight_decay)
        check_bool("decay_all", self.decay_all)
        check_fraction("label_smoothing", self.label_smoothing)
        check_choice("warmup", self.warmup, WARMUPS)
        check_count("seed", self.seed, "e.g. 0")

    def _validate_data(self) -> None:
        check_choice("dataset", self.dataset, DATASETS)
        check_count("val_size", self.val_size, "0 = train on every image, e.g. 5000")
        if self.train_limit is not None:
            check_positive_int("train_limit", self.train_limit)
        check_count("padding", self.padding, "0 = no random crop, e.g. 4")
        check_choice("padding_mode", self.padding_mode, PADDING_MODES)
        check_bool("flip", self.flip)
        check_count("cutout", self.cutout, "0 = off, e.g. 8")
        if (self.mean is None) != (self.std is None):
            raise ParameterError(
                "parameters mean and std are invalid: give both (one value per channel, "
                "e.g. mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)) or neither"
            )
        if self.mean is not None:
            check_channel_stats(self.mean, self.std)

    def _validate_run_folder(self) -> None:
        if self.out is not None and not isinstance(self.out, (str, os.PathLike)):
            raise ParameterError(f"parameter out={self.out!r} is invalid: give a folder path")
        check_bool("resume", self.resume)
        check_bool("overwrite", self.overwrite)
        if self.resume and self.out is None:
            raise ParameterError(
                "parameter resume=True is invalid: resuming needs a run folder, set out"
            )
        if self.resume and self.overwrite:
            raise ParameterError(
                "parameters resume=True and overwrite=True contradict each other: "
                "choose one (resume continues the run in out, overwrite starts it again)"
            )

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON- and checkpoint-safe dict of primitives."""
        d = dataclasses.asdict(self)
        if d["out"] is not None:
            d["out"] = str(d["out"])
        for name in ("mean", "std"):
            if d[name] is not None:
                d[name] = [float(v) for v in d[name]]
        return d

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The config :meth:`to_dict` saved (unknown keys, from newer versions, are dropped)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def differences(self, saved: dict[str, Any]) -> list[str]:
        """The fields (except :data:`RESUME_FREE`) whose values differ from ``saved``."""
        current = self.to_dict()
        defaults = TrainConfig().to_dict()
        return [
            k for k in current
            if k not in RESUME_FREE and saved.get(k, defaults[k]) != current[k]
        ]


def check_bool(name: str, value: Any) -> None:
    """Raise :class:`ParameterError` unless ``value`` is True or False."""
    if not isinstance(value, bool):
        raise ParameterError(f"parameter {name}={value!r} is invalid: choose True or False")


def check_nonnegative(name: str, value: Any) -> None:
    """Raise unless ``value`` is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ParameterError(
            f"parameter {name}={value!r} is invalid: it must be a number >= 0, e.g. 5e-4"
        )


def check_count(name: str, value: Any, example: str) -> None:
    """Raise unless ``value`` is an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParameterError(
            f"parameter {name}={value!r} is invalid: it must be an integer >= 0 ({example})"
        )


def check_channel_stats(mean: Any, std: Any) -> None:
    """Raise unless ``mean``/``std`` are equally long sequences, with every std > 0."""
    for name, values in (("mean", mean), ("std", std)):
        if not isinstance(values, (tuple, list)) or not values or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in values
        ):
            raise ParameterError(
                f"parameter {name}={values!r} is invalid: give one number per channel, "
                "e.g. (0.5, 0.5, 0.5)"
            )
    if len(mean) != len(std):
        raise ParameterError(
            f"parameters mean={mean!r} and std={std!r} are invalid: they must have one "
            "value per channel each"
        )
    if any(v <= 0 for v in std):
        raise ParameterError(f"parameter std={std!r} is invalid: every value must be > 0")
