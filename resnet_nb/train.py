"""The training engine: one loop for CPU, CUDA and MPS, single process or DDP.

What a step does
----------------
The training split lives on the device as one uint8 tensor. Each step gathers a
batch of it in a seeded random order, augments it there (random crop with
4-pixel padding, horizontal flip, optional cutout - see :mod:`resnet_nb.augment`),
converts and normalises it in one fused operation, and runs forward and backward
under autocast (bf16 where the device runs it fast, fp16 with a gradient scaler
on older GPUs, or fp32). SGD with Nesterov momentum updates the weights; BatchNorm
and bias parameters get no weight decay. The learning rate follows a schedule
computed per iteration: one-cycle (default), cosine, or the paper's steps.

Around the steps
----------------
Every epoch the 5,000-image validation split is evaluated, a row of history
(loss, accuracy, lr, images/s, wall time) is appended, and - when the run has a
folder - a checkpoint and ``history.json`` are written atomically. The test
split is evaluated once, at the end. A run continues from its checkpoint with
``resume=True`` and ends exactly where an uninterrupted run would.

Under ``torchrun --nproc_per_node=N`` the same code runs DistributedDataParallel:
every rank draws the same global batch and augments it with the same
generator, then trains on its own slice, so the only difference from one process
with the same global batch is that BatchNorm sees per-rank batch statistics.

Command line: ``python -m resnet_nb.train --profile quick`` (see :func:`main`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import random
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet_nb.augment import PADDING_MODES, Augment
from resnet_nb.params import (
    ParameterError,
    check_choice,
    check_device,
    check_fraction,
    check_positive_float,
    check_positive_int,
)
from resnet_nb.report import device_name

__all__ = [
    "DATASETS",
    "PRECISIONS",
    "SCHEDULES",
    "PROFILES",
    "PAPER_STEP_SCHEDULE",
    "TrainConfig",
    "Result",
    "LRSchedule",
    "NonFiniteLossError",
    "fit",
    "evaluate",
    "predict_logits",
    "lr_range_test",
    "resolve_device",
    "precision_name",
    "resolve_precision",
    "param_groups",
    "synthetic_data",
    "limit_train",
    "load_profile",
    "load_checkpoint",
    "main",
]

SCHEDULES = ("onecycle", "cosine", "step")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DATASETS = ("cifar10", "fashion_mnist", "synthetic")
WARMUPS = ("auto", "on", "off")

#: The paper's CIFAR-10 schedule (He et al., 2015, section 4.2), in iterations.
#: The engine keeps its proportions (drops at 1/2 and 3/4 of the run) so it
#: scales to any number of epochs; 64k iterations at batch 128 on 45k images
#: is about 182 epochs.
PAPER_STEP_SCHEDULE: dict[str, Any] = {
    "lr": 0.1,
    "batch_size": 128,
    "milestones": (32_000, 48_000),
    "total_iterations": 64_000,
    "warmup_lr": 0.01,
    "warmup_until_train_error": 0.80,
    "warmup_iterations": 400,
}

#: Built-in command-line profiles; ``profiles/<name>.yaml`` (section ``train``)
#: overrides them when present.
PROFILES: dict[str, dict[str, Any]] = {
    # CPU-friendly: a few minutes on two cores.
    "quick": {
        "model": "resnet20",
        "epochs": 3,
        "batch_size": 128,
        "lr": 0.2,
        "train_limit": 8_000,
        "label_smoothing": 0.1,
        "out": "runs/quick",
    },
    # GPU: a full run on the whole training split, compiled.
    "full": {
        "model": "resnet20",
        "epochs": 40,
        "batch_size": 512,
        "lr": 0.8,
        "label_smoothing": 0.1,
        "compile": True,
        "out": "runs/full",
    },
}

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"
METRICS = "metrics.json"
TIMING_FIELDS = ("images_per_s", "wall_time_s", "epoch_time_s")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


# ----------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Everything that defines a training run (and nothing about the data values).

    ``lr`` is the peak learning rate of one-cycle and cosine and the initial one
    of the step schedule. ``val_size`` images of the training split are held out
    for validation (split with a fixed seed so every run validates on the same
    images); ``train_limit`` trains on a seeded subset of the rest for quick runs.
    ``precision="auto"`` picks bf16 autocast on GPUs that support it and on
    CPUs with bf16 matrix units (AMX), fp16 with a gradient scaler on other
    CUDA GPUs, else fp32 (on a CPU without AMX, bf16 is slower than fp32).
    ``warmup`` is the paper's ResNet-110 warm-up (lr/10 until the training
    error drops below 80%); ``"auto"`` enables it for the step schedule
    on 110-layer models. ``out`` is the run folder (checkpoint, history,
    metrics); ``None`` keeps everything in memory. ``resume`` continues from
    ``out/checkpoint.pt`` if it exists. ``compile`` wraps the network in
    ``torch.compile``; on a single CUDA device in its ``"reduce-overhead"`` mode
    (CUDA graphs). On CUDA the optimiser is the fused SGD and cuDNN's autotuner
    is on. ``stem`` (``"imagenet"`` or ``"cifar"``)
    applies to the ImageNet family (``resnet18`` .. ``resnet152``) only; ``None``
    is their ImageNet stem.
    """

    model: str = "resnet20"
    stem: str | None = None
    dataset: str = "cifar10"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.2
    schedule: str = "onecycle"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    device: str = "auto"
    seed: int = 0
    val_size: int = 5000
    train_limit: int | None = None
    padding_mode: str = "reflect"
    cutout: int = 0
    warmup: str = "auto"
    out: str | None = None
    resume: bool = False

    def validate(self, *, model_names: Sequence[str] | None = None) -> TrainConfig:
        """Check every field; raise :class:`ParameterError` naming the first bad one."""
        if model_names is None:
            from resnet_nb.models import MODEL_NAMES

            model_names = MODEL_NAMES
        check_choice("model", self.model, model_names)
        if self.stem is not None:
            from resnet_nb.models import IMAGENET_MODEL_NAMES, STEMS

            check_choice("stem", self.stem, STEMS)
            if self.model not in IMAGENET_MODEL_NAMES:
                raise ParameterError(
                    f"parameter stem={self.stem!r} is invalid for model={self.model!r}: "
                    f"a stem applies only to {', '.join(IMAGENET_MODEL_NAMES)}; "
                    "leave it unset (None) for the CIFAR networks"
                )
        check_choice("dataset", self.dataset, DATASETS)
        check_positive_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size)
        check_positive_float("lr", self.lr)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_fraction("momentum", self.momentum)
        _check_bool("nesterov", self.nesterov)
        if self.nesterov and self.momentum == 0:
            raise ParameterError(
                "parameter nesterov=True is invalid: Nesterov momentum needs momentum > 0"
            )
        _check_nonnegative("weight_decay", self.weight_decay)
        check_fraction("label_smoothing", self.label_smoothing)
        check_choice("precision", self.precision, PRECISIONS)
        _check_bool("channels_last", self.channels_last)
        _check_bool("compile", self.compile)
        check_device("device", self.device)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ParameterError(
                f"parameter seed={self.seed!r} is invalid: it must be an integer >= 0, e.g. 0"
            )
        check_positive_int("val_size", self.val_size)
        if self.train_limit is not None:
            check_positive_int("train_limit", self.train_limit)
        check_choice("padding_mode", self.padding_mode, PADDING_MODES)
        if isinstance(self.cutout, bool) or not isinstance(self.cutout, int) or self.cutout < 0:
            raise ParameterError(
                f"parameter cutout={self.cutout!r} is invalid: "
                "it must be an integer >= 0 (0 = off, e.g. 8)"
            )
        check_choice("warmup", self.warmup, WARMUPS)
        if self.out is not None and not isinstance(self.out, (str, os.PathLike)):
            raise ParameterError(f"parameter out={self.out!r} is invalid: give a folder path")
        _check_bool("resume", self.resume)
        if self.resume and self.out is None:
            raise ParameterError(
                "parameter resume=True is invalid: resuming needs a run folder, set out"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON- and checkpoint-safe dict of primitives."""
        d = dataclasses.asdict(self)
        if d["out"] is not None:
            d["out"] = str(d["out"])
        return d


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ParameterError(f"parameter {name}={value!r} is invalid: choose True or False")


def _check_nonnegative(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ParameterError(
            f"parameter {name}={value!r} is invalid: it must be a number >= 0, e.g. 5e-4"
        )


# Fields that may differ between a run and its resumption.
_RESUME_FREE = ("resume", "device", "out")


# ----------------------------------------------------------------------------
# device, precision, distributed
# ----------------------------------------------------------------------------


def resolve_device(device: str = "auto") -> torch.device:
    """The torch device for a ``device`` parameter: 'auto' = cuda, then mps, then cpu."""
    check_device("device", device)
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def _cpu_bf16_pays() -> bool:
    """Whether bf16 autocast speeds training up on this CPU.

    It does where the CPU has matrix units for bf16 (Intel AMX): ResNet-20
    trains about 1.7x faster there. With only the AVX-512 bf16 instructions
    the convolutions gain nothing and the casts cost time: on such a 2-core
    CPU a ResNet-20 step ran at 0.6-0.8x its fp32 speed.
    """
    try:
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(amx and amx()) and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """Return ``(autocast dtype or None for fp32, whether to use a GradScaler)``."""
    check_choice("precision", precision, PRECISIONS)
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif device.type == "cpu":
            precision = "bf16" if _cpu_bf16_pays() else "fp32"
        else:
            precision = "fp32"
    if precision == "bf16":
        return torch.bfloat16, False
    if precision == "fp16":
        return torch.float16, device.type == "cuda"
    return None, False


def _autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False  # whether fit() initialised the process group

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_param: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    owned = False
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_param in ("auto", "cuda")
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        owned = True
    return _Dist(
        rank=dist.get_rank(),
        world=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        owned=owned,
    )


def _all_reduce_sum(values: list[float], device: torch.device, ctx: _Dist) -> list[float]:
    if not ctx.active:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _broadcast_buffers(model: nn.Module, ctx: _Dist) -> None:
    """Give every rank rank 0's BatchNorm running statistics."""
    if not ctx.active:
        return
    import torch.distributed as dist

    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


# ----------------------------------------------------------------------------
# optimiser and schedules
# ----------------------------------------------------------------------------


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two parameter groups: weights with ``weight_decay``, BN/bias params without.

    A parameter with one dimension or fewer is a bias or a normalisation
    scale/shift; decaying those only fights the normalisation.
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class LRSchedule:
    """Learning rate as a function of the iteration, plus the paper's warm-up.

    ``onecycle``: linear from ``peak/25`` to ``peak`` over the first 25% of the
    iterations, then linear down to 0. ``cosine``: half a cosine from ``peak``
    to 0. ``step``: ``peak``, divided by 10 at 1/2 and again at 3/4 of the run
    (the paper's 32k and 48k of 64k iterations).

    With ``warmup=True`` the rate is ``peak/10`` until the training error over
    the last 10 iterations falls below 80% (the paper's ResNet-110 warm-up,
    about 400 of 64k iterations there), and at most for
    ``total_steps * 800 / 64000`` iterations, twice the paper's figure scaled
    to this run, so a network that never learns cannot stay in warm-up.
    """

    WINDOW = 10

    def __init__(self, kind: str, *, peak_lr: float, total_steps: int, warmup: bool = False):
        check_choice("schedule", kind, SCHEDULES)
        self.kind = kind
        self.peak_lr = float(peak_lr)
        self.total_steps = int(total_steps)
        self.warmup_active = bool(warmup)
        self.warmup_cap = max(1, round(total_steps * 2 * PAPER_STEP_SCHEDULE["warmup_iterations"]
                                       / PAPER_STEP_SCHEDULE["total_iterations"]))
        self.warmup_end: int | None = None
        self._errors: list[float] = []

    @property
    def milestones(self) -> tuple[int, int]:
        """Iterations at which the step schedule divides the rate by 10."""
        total = self.total_steps
        paper_total = PAPER_STEP_SCHEDULE["total_iterations"]
        m1, m2 = PAPER_STEP_SCHEDULE["milestones"]
        return round(total * m1 / paper_total), round(total * m2 / paper_total)

    def base_lr(self, step: int) -> float:
        """The schedule's rate at iteration ``step`` (0-based), ignoring warm-up."""
        peak, total = self.peak_lr, self.total_steps
        t = min(max(step, 0), total)
        if self.kind == "onecycle":
            up = max(1, round(0.25 * total))
            if t < up:
                return peak * (0.04 + 0.96 * t / up)
            return peak * max(0.0, (total - t) / max(1, total - up))
        if self.kind == "cosine":
            return peak * 0.5 * (1.0 + math.cos(math.pi * t / total))
        m1, m2 = self.milestones
        return peak * (0.1 ** ((t >= m1) + (t >= m2)))

    def lr(self, step: int) -> float:
        """The rate to use at iteration ``step``, warm-up included."""
        if self.warmup_active:
            return self.peak_lr * 0.1
        return self.base_lr(step)

    def observe(self, step: int, train_error: Callable[[], float]) -> None:
        """Feed the error of iteration ``step``'s batch (only read during warm-up)."""
        if not self.warmup_active:
            return
        self._errors = (self._errors + [float(train_error())])[-self.WINDOW :]
        window_full = len(self._errors) == self.WINDOW
        if (window_full and sum(self._errors) / self.WINDOW
                < PAPER_STEP_SCHEDULE["warmup_until_train_error"]) or step + 1 >= self.warmup_cap:
            self.warmup_active = False
            self.warmup_end = step + 1

    def state_dict(self) -> dict[str, Any]:
        """Primitives only, so checkpoints load with ``weights_only=True``."""
        return {
            "kind": self.kind,
            "peak_lr": self.peak_lr,
            "total_steps": self.total_steps,
            "warmup_active": self.warmup_active,
            "warmup_end": self.warmup_end,
            "errors": list(self._errors),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        self.kind = state["kind"]
        self.peak_lr = state["peak_lr"]
        self.total_steps = state["total_steps"]
        self.warmup_active = state["warmup_active"]
        self.warmup_end = state["warmup_end"]
        self._errors = list(state["errors"])


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------


def synthetic_data(n: int, *, num_classes: int = 10, size: int = 32, seed: int = 0) -> Any:
    """A small learnable image-classification set for smoke tests and demos.

    Each class is a fixed random 4x4 colour pattern, upsampled to
    ``size x size``; each image is its class's pattern plus noise and a random
    brightness change. Returns a :class:`resnet_nb.data.ImageData`.
    """
    from resnet_nb.data import ImageData

    g = torch.Generator().manual_seed(seed)
    patterns = torch.rand(num_classes, 3, 4, 4, generator=g)
    patterns = F.interpolate(patterns, size=(size, size), mode="nearest")
    labels = torch.randint(0, num_classes, (n,), generator=g)
    brightness = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=g)
    noise = 0.25 * torch.randn(n, 3, size, size, generator=g)
    images = ((patterns[labels] * brightness + noise).clamp(0, 1) * 255).round().to(torch.uint8)
    return ImageData(
        images=images,
        labels=labels,
        classes=[f"class{i}" for i in range(num_classes)],
        source=f"synthetic (n={n}, seed={seed})",
    )


def _load_splits(config: TrainConfig) -> tuple[Any, Any, Any]:
    from resnet_nb import data

    if config.dataset == "synthetic":
        full = synthetic_data(config.val_size + (config.train_limit or 2000) + 1000, seed=1234)
        n = len(full)
        rest = full.subset(torch.arange(0, n - 1000))
        test = full.subset(torch.arange(n - 1000, n))
        train, val = data.train_val_split(rest, val_size=config.val_size, seed=0)
        return train, val, test
    loader = data.load_cifar10 if config.dataset == "cifar10" else data.load_fashion_mnist
    full = loader("train")
    if config.val_size >= len(full):
        raise ParameterError(
            f"parameter val_size={config.val_size!r} is invalid: "
            f"it must be smaller than the {len(full)} training images"
        )
    train, val = data.train_val_split(full, val_size=config.val_size, seed=0)
    return train, val, loader("test")


def limit_train(data: Any, limit: int | None, *, seed: int = 0) -> Any:
    """A seeded random subset of ``limit`` images of ``data`` (all of it if ``limit`` is None).

    The draw is random, not the first ``limit`` images: some copies of CIFAR-10
    are stored sorted by class, where a prefix would hold one class only. The
    subset keeps the original order and is the same for the same ``seed``.
    """
    if limit is None:
        return data
    check_positive_int("limit", limit)
    if limit >= len(data):
        return data
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return data.subset(order[:limit].sort().values)


# ----------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------


def _logits_batches(
    model: nn.Module,
    images: torch.Tensor,
    augment: Augment,
    *,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype | None,
) -> Any:
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                x = augment.eval(images[start : start + batch_size].to(device, non_blocking=True))
                with _autocast(device, dtype):
                    out = model(x)
                yield start, out.float()
    finally:
        model.train(was_training)


def _model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def predict_logits(
    model: nn.Module,
    data: Any,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 500,
    precision: str = "auto",
    channels_last: bool = False,
) -> torch.Tensor:
    """Float32 logits ``[N, num_classes]`` (on the CPU) for every image of ``data``.

    ``data`` is an ImageData (or a uint8 ``[N, C, H, W]`` tensor); ``mean`` and
    ``std`` are the training split's channel statistics. Runs on the model's
    device, in eval mode, and leaves the model's mode as it was.
    """
    images = data if isinstance(data, torch.Tensor) else data.images
    device = _model_device(model)
    dtype, _ = resolve_precision(precision, device)
    augment = Augment(mean=mean, std=std, channels_last=channels_last)
    parts = [
        out.cpu()
        for _, out in _logits_batches(
            model, images, augment, batch_size=batch_size, device=device, dtype=dtype
        )
    ]
    return torch.cat(parts) if parts else torch.empty(0)


def evaluate(
    model: nn.Module,
    data: Any,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 500,
    precision: str = "auto",
    channels_last: bool = False,
) -> dict[str, float]:
    """Cross-entropy loss and accuracy of ``model`` on ``data`` (an ImageData).

    Returns ``{"loss": ..., "acc": ..., "n": ...}``; accuracy is a fraction.
    """
    device = _model_device(model)
    sums = _eval_sums(
        model,
        data.images,
        data.labels,
        Augment(mean=mean, std=std, channels_last=channels_last),
        batch_size=batch_size,
        device=device,
        dtype=resolve_precision(precision, device)[0],
    )
    return {"loss": sums[0] / sums[2], "acc": sums[1] / sums[2], "n": int(sums[2])}


def _eval_sums(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    augment: Augment,
    *,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype | None,
) -> list[float]:
    loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for start, out in _logits_batches(
        model, images, augment, batch_size=batch_size, device=device, dtype=dtype
    ):
        y = labels[start : start + len(out)].to(device, non_blocking=True)
        loss += F.cross_entropy(out, y, reduction="sum").double()
        correct += (out.argmax(1) == y).sum()
    return [loss.item(), float(correct.item()), float(len(images))]


def _eval_distributed(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    augment: Augment,
    ctx: _Dist,
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    batch_size: int,
) -> dict[str, float]:
    """Each rank evaluates its slice; sums are all-reduced, so all ranks agree."""
    n = len(images)
    lo, hi = n * ctx.rank // ctx.world, n * (ctx.rank + 1) // ctx.world
    sums = _eval_sums(
        model, images[lo:hi], labels[lo:hi], augment,
        batch_size=batch_size, device=device, dtype=dtype,
    )
    loss, correct, count = _all_reduce_sum(sums, device, ctx)
    return {"loss": loss / count, "acc": correct / count}


# ----------------------------------------------------------------------------
# checkpoints and files
# ----------------------------------------------------------------------------


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_json(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _torchvision_version() -> str | None:
    try:
        import torchvision
    except ImportError:  # the engine itself does not need it
        return None
    return str(torchvision.__version__)


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`fit` (safely: ``weights_only=True``).

    Keys: ``model`` (a state dict), ``optimizer``, ``schedule``, ``scaler``,
    ``rng``, ``epoch`` (epochs completed), ``history``, ``config``, ``stats``.
    """
    return torch.load(path, map_location=map_location, weights_only=True)


def _rng_state(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        **{name: g.get_state() for name, g in generators.items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    for name, g in generators.items():
        g.set_state(state[name])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------
# progress
# ----------------------------------------------------------------------------


def _tqdm() -> Any:
    """tqdm's notebook bar inside a kernel with ipywidgets, else the text bar."""
    import importlib.util

    from tqdm import std

    if "ipykernel" in sys.modules and importlib.util.find_spec("ipywidgets") is not None:
        try:
            from IPython import get_ipython

            if get_ipython() is not None and "IPKernelApp" in get_ipython().config:
                from tqdm.notebook import tqdm as notebook_tqdm

                return notebook_tqdm
        except ImportError:
            pass
    return std.tqdm


# ----------------------------------------------------------------------------
# fit
# ----------------------------------------------------------------------------


@dataclass
class Result:
    """What :func:`fit` returns.

    ``history`` holds one dict per epoch (epoch, train_loss, train_acc,
    val_loss, val_acc, lr, images_per_s, epoch_time_s, wall_time_s); ``test``
    the test split's ``{"loss", "acc"}`` (evaluated once, at the end) or None;
    ``mean``/``std`` the normalisation statistics of the training split, needed
    by :func:`evaluate` and :func:`predict_logits`.
    """

    model: nn.Module
    history: list[dict[str, Any]]
    test: dict[str, float] | None
    config: TrainConfig
    mean: tuple[float, ...]
    std: tuple[float, ...]
    device: str
    precision: str
    out: Path | None = None
    wall_time_s: float = 0.0
    warmup_end: int | None = field(default=None)

    def evaluate(self, data: Any, *, batch_size: int = 500) -> dict[str, float]:
        """:func:`evaluate` with this run's normalisation and precision."""
        return evaluate(
            self.model, data, mean=self.mean, std=self.std, batch_size=batch_size,
            precision=self.precision, channels_last=self.config.channels_last,
        )

    def predict_logits(self, data: Any, *, batch_size: int = 500) -> torch.Tensor:
        """:func:`predict_logits` with this run's normalisation and precision."""
        return predict_logits(
            self.model, data, mean=self.mean, std=self.std, batch_size=batch_size,
            precision=self.precision, channels_last=self.config.channels_last,
        )


def precision_name(dtype: torch.dtype | None) -> str:
    """The name of an autocast dtype from :func:`resolve_precision`: bf16, fp16 or fp32."""
    if dtype is torch.bfloat16:
        return "bf16"
    return "fp16" if dtype is torch.float16 else "fp32"


def fit(
    config: TrainConfig,
    *,
    train: Any = None,
    val: Any = None,
    test: Any = None,
    model: nn.Module | None = None,
    progress: bool = True,
) -> Result:
    """Train a model as ``config`` says and return a :class:`Result`.

    Parameters
    ----------
    config:
        The run's :class:`TrainConfig` (validated here).
    train, val, test:
        ImageData splits. When ``train`` is None they are loaded from
        ``config.dataset`` (validation = ``config.val_size`` images held out of
        the training split). ``val`` or ``test`` may be None to skip them.
    model:
        A module to train instead of ``build_model(config.model)``.
    progress:
        Show tqdm progress bars (rank 0 only).
    """
    model_names: Sequence[str] | None = None
    if model is not None:
        model_names = [config.model]
    config.validate(model_names=model_names)
    ctx = _init_distributed(config.device)
    try:
        return _fit(config, ctx, train, val, test, model, progress)
    finally:
        if ctx.owned:
            import torch.distributed as dist

            dist.destroy_process_group()


def _fit(
    config: TrainConfig,
    ctx: _Dist,
    train: Any,
    val: Any,
    test: Any,
    model: nn.Module | None,
    progress: bool,
) -> Result:
    from resnet_nb.data import channel_stats

    started = time.perf_counter()
    device = resolve_device(config.device)
    if ctx.active and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    dtype, use_scaler = resolve_precision(config.precision, device)
    if train is None:
        train, val, test = _load_splits(config)
    train = limit_train(train, config.train_limit, seed=config.seed)
    if config.batch_size % ctx.world:
        raise ParameterError(
            f"parameter batch_size={config.batch_size!r} is invalid: the global batch must "
            f"divide evenly among the {ctx.world} processes"
        )
    if config.batch_size > len(train):
        raise ParameterError(
            f"parameter batch_size={config.batch_size!r} is invalid: "
            f"it is larger than the {len(train)} training images"
        )
    mean, std = channel_stats(train)
    num_classes = len(train.classes)

    out = Path(config.out) if config.out is not None else None
    checkpoint: dict[str, Any] | None = None
    if out is not None and config.resume and (out / CHECKPOINT).exists():
        checkpoint = load_checkpoint(out / CHECKPOINT)
        _check_resumable(config, checkpoint["config"])

    torch.manual_seed(config.seed)
    random.seed(config.seed)
    if model is None:
        from resnet_nb.models import build_model

        model = build_model(
            config.model, num_classes=num_classes, in_channels=train.images.shape[1],
            stem=config.stem,
        )
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)
    on_cuda = device.type == "cuda"
    if on_cuda:
        # Every batch has the same shape, so cuDNN's autotuner pays for itself.
        torch.backends.cudnn.benchmark = True
    optimizer = torch.optim.SGD(
        param_groups(model, config.weight_decay),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        # One fused kernel per parameter group instead of several per step.
        **({"fused": True} if on_cuda else {}),
    )
    steps_per_epoch = len(train) // config.batch_size
    total_steps = steps_per_epoch * config.epochs
    warmup = config.warmup == "on" or (
        config.warmup == "auto" and config.schedule == "step" and config.model.endswith("110")
    )
    schedule = LRSchedule(
        config.schedule, peak_lr=config.lr, total_steps=total_steps, warmup=warmup
    )
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    augment = Augment(
        mean=mean, std=std, padding=4, flip=True, padding_mode=config.padding_mode,
        cutout=config.cutout, channels_last=config.channels_last,
    )
    generators = {
        "augment": torch.Generator(device=device).manual_seed(config.seed),
        "order": torch.Generator().manual_seed(config.seed + 1),
    }
    history: list[dict[str, Any]] = []
    start_epoch = 0
    wall_offset = 0.0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        schedule.load_state_dict(checkpoint["schedule"])
        scaler.load_state_dict(checkpoint["scaler"])
        _set_rng_state(checkpoint["rng"], generators)
        history = list(checkpoint["history"])
        start_epoch = int(checkpoint["epoch"])
        wall_offset = history[-1]["wall_time_s"] if history else 0.0

    train_model: nn.Module = model
    if ctx.active:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        # On one GPU, also replay each step's kernels as a CUDA graph: a small
        # network's step is otherwise bound by the host launching its kernels.
        mode = "reduce-overhead" if on_cuda and not ctx.active else None
        train_model = torch.compile(train_model, mode=mode)  # type: ignore[assignment]

    images = train.images.to(device)
    labels = train.labels.to(device)
    val_data = (val.images.to(device), val.labels.to(device)) if val is not None else None
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    shard = config.batch_size // ctx.world
    lo, hi = ctx.rank * shard, (ctx.rank + 1) * shard
    check_every = 1 if device.type == "cpu" else 25
    tqdm = _tqdm()
    # A text bar redrawn in a log file (stderr not a terminal) is noise: the
    # one line per epoch printed below says the same.
    interactive_bar = tqdm.__module__ != "tqdm.std" or sys.stderr.isatty()
    eval_batch = max(config.batch_size, 500)

    last_finite: tuple[int, float] | None = None
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(train), generator=generators["order"]).to(device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        pending: list[tuple[int, torch.Tensor]] = []
        bar = tqdm(
            total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
            disable=not (progress and ctx.main) or not interactive_bar, unit="batch",
        )
        for i in range(steps_per_epoch):
            step = epoch * steps_per_epoch + i
            lr = schedule.lr(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            index = order[i * config.batch_size : (i + 1) * config.batch_size]
            x = augment.train(images[index], generators["augment"])[lo:hi]
            y = labels[index][lo:hi]
            with _autocast(device, dtype):
                logits = train_model(x)
                loss = criterion(logits, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            hits = (logits.detach().argmax(1) == y).sum()
            loss_sum += loss.detach().double() * len(y)
            correct += hits
            schedule.observe(step, lambda: 1.0 - _global_acc(hits, len(y), device, ctx))
            pending.append((step, loss.detach()))
            if len(pending) >= check_every or i == steps_per_epoch - 1:
                last_finite = _check_finite(pending, last_finite, steps_per_epoch)
                pending = []
                bar.set_postfix(loss=f"{last_finite[1]:.3f}", lr=f"{lr:.4f}", refresh=False)
            bar.update(1)
        bar.close()
        train_time = time.perf_counter() - t0
        n_seen = steps_per_epoch * shard
        tl, tc, tn = _all_reduce_sum([loss_sum.item(), float(correct.item()), float(n_seen)],
                                     device, ctx)
        _broadcast_buffers(model, ctx)
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": tl / tn,
            "train_acc": tc / tn,
            "val_loss": None,
            "val_acc": None,
            "lr": lr,
        }
        if val_data is not None:
            metrics = _eval_distributed(
                model, *val_data, augment, ctx, device=device, dtype=dtype, batch_size=eval_batch
            )
            row["val_loss"], row["val_acc"] = metrics["loss"], metrics["acc"]
        row["images_per_s"] = steps_per_epoch * config.batch_size / train_time
        row["epoch_time_s"] = time.perf_counter() - t0
        row["wall_time_s"] = wall_offset + time.perf_counter() - started
        history.append(row)
        if progress and ctx.main:
            val_text = f"  val {row['val_acc']:.2%}" if row["val_acc"] is not None else ""
            print(
                f"epoch {epoch + 1}/{config.epochs}  train loss {row['train_loss']:.3f} "
                f"acc {row['train_acc']:.2%}{val_text}  {row['images_per_s']:.0f} img/s  "
                f"{row['wall_time_s']:.0f}s",
                flush=True,
            )
        if out is not None and ctx.main:
            out.mkdir(parents=True, exist_ok=True)
            _atomic_save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": _rng_state(generators),
                    "epoch": epoch + 1,
                    "history": history,
                    "config": config.to_dict(),
                    "stats": {"mean": list(mean), "std": list(std)},
                    "classes": list(train.classes),
                },
                out / CHECKPOINT,
            )
            _atomic_json(history, out / HISTORY)

    _broadcast_buffers(model, ctx)
    test_metrics = None
    if test is not None:
        test_metrics = _eval_distributed(
            model, test.images.to(device), test.labels.to(device), augment, ctx,
            device=device, dtype=dtype, batch_size=eval_batch,
        )
    wall = wall_offset + time.perf_counter() - started
    if out is not None and ctx.main:
        out.mkdir(parents=True, exist_ok=True)
        _atomic_json(
            {
                "test_loss": test_metrics["loss"] if test_metrics else None,
                "test_acc": test_metrics["acc"] if test_metrics else None,
                "final_val_acc": history[-1]["val_acc"] if history else None,
                "best_val_acc": max(
                    (r["val_acc"] for r in history if r["val_acc"] is not None), default=None
                ),
                "epochs": config.epochs,
                "wall_time_s": wall,
                "device": str(device),
                "device_name": device_name(device),
                "precision": precision_name(dtype),
                "world_size": ctx.world,
                "torch": torch.__version__,
                "torchvision": _torchvision_version(),
                "python": platform.python_version(),
                "train_images": len(train),
                "data_source": getattr(train, "source", None),
                "classes": list(train.classes),
                "config": config.to_dict(),
            },
            out / METRICS,
        )
    return Result(
        model=model,
        history=history,
        test=test_metrics,
        config=config,
        mean=tuple(mean),
        std=tuple(std),
        device=str(device),
        precision=precision_name(dtype),
        out=out,
        wall_time_s=wall,
        warmup_end=schedule.warmup_end,
    )


def _global_acc(hits: torch.Tensor, n: int, device: torch.device, ctx: _Dist) -> float:
    correct, count = _all_reduce_sum([float(hits.item()), float(n)], device, ctx)
    return correct / count


def _check_finite(
    pending: list[tuple[int, torch.Tensor]],
    last_finite: tuple[int, float] | None,
    steps_per_epoch: int,
) -> tuple[int, float]:
    values = torch.stack([loss for _, loss in pending]).float().cpu()
    finite = torch.isfinite(values)
    if bool(finite.all()):
        return pending[-1][0], float(values[-1])
    bad = int((~finite).nonzero()[0])
    if bad > 0:
        last_finite = (pending[bad - 1][0], float(values[bad - 1]))
    step = pending[bad][0]
    epoch, i = divmod(step, steps_per_epoch)
    before = (
        f"the last finite loss was {last_finite[1]:.4g} at iteration {last_finite[0] + 1}"
        if last_finite is not None
        else "no finite loss was seen before it"
    )
    raise NonFiniteLossError(
        f"training loss became {float(values[bad])} at epoch {epoch + 1}, "
        f"iteration {step + 1} (step {i + 1} of the epoch); {before}. "
        "Try a lower lr, fp32 precision, or check the data."
    )


def _check_resumable(config: TrainConfig, saved: dict[str, Any]) -> None:
    current = config.to_dict()
    differ = [k for k in current if k not in _RESUME_FREE and saved.get(k) != current[k]]
    if differ:
        shown = ", ".join(f"{k}={current[k]!r} (checkpoint: {saved.get(k)!r})" for k in differ)
        raise ParameterError(
            f"parameter resume=True is invalid: the run in {config.out} was started with "
            f"other settings: {shown}. Use the same settings or a new out folder."
        )


# ----------------------------------------------------------------------------
# LR range test
# ----------------------------------------------------------------------------


def lr_range_test(
    model: nn.Module,
    train: Any,
    *,
    batch_size: int = 128,
    start_lr: float = 1e-4,
    end_lr: float = 10.0,
    steps: int = 100,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    precision: str = "auto",
    channels_last: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Sweep the learning rate exponentially and record the training loss (Smith, 2017).

    Trains ``model`` (on its current device) for up to ``steps`` iterations with
    the rate growing from ``start_lr`` to ``end_lr``, stopping early when the
    smoothed loss exceeds 4x its minimum. The model's weights are restored
    afterwards. Returns ``{"lr", "loss", "smoothed", "suggested_lr"}`` where
    the suggestion is the rate at the smoothed minimum divided by 10.
    """
    from resnet_nb.data import channel_stats

    check_positive_int("batch_size", batch_size)
    check_positive_int("steps", steps)
    check_positive_float("start_lr", start_lr)
    check_positive_float("end_lr", end_lr)
    if end_lr <= start_lr:
        raise ParameterError(f"parameter end_lr={end_lr!r} is invalid: it must exceed start_lr")
    device = _model_device(model)
    dtype, use_scaler = resolve_precision(precision, device)
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    mean, std = channel_stats(train)
    augment = Augment(mean=mean, std=std, channels_last=channels_last)
    optimizer = torch.optim.SGD(
        param_groups(model, weight_decay), lr=start_lr, momentum=momentum, nesterov=momentum > 0
    )
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    gen = torch.Generator(device=device).manual_seed(seed)
    order_gen = torch.Generator().manual_seed(seed + 1)
    images, labels = train.images.to(device), train.labels.to(device)
    factor = (end_lr / start_lr) ** (1 / max(1, steps - 1))
    lrs, losses, smoothed = [], [], []
    avg, best = 0.0, math.inf
    order = torch.randperm(len(images), generator=order_gen).to(device)
    per_epoch = max(1, len(images) // batch_size)
    model.train()
    bar = _tqdm()(total=steps, desc="lr range test", leave=False, disable=not progress)
    try:
        for i in range(steps):
            if i and i % per_epoch == 0:
                order = torch.randperm(len(images), generator=order_gen).to(device)
            lr = start_lr * factor**i
            for group in optimizer.param_groups:
                group["lr"] = lr
            j = i % per_epoch
            index = order[j * batch_size : (j + 1) * batch_size]
            x = augment.train(images[index], gen)
            with _autocast(device, dtype):
                loss = F.cross_entropy(model(x), labels[index])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            value = float(loss.item())
            bar.update(1)
            if not math.isfinite(value):
                break
            avg = 0.9 * avg + 0.1 * value
            s = avg / (1 - 0.9 ** (i + 1))
            lrs.append(lr)
            losses.append(value)
            smoothed.append(s)
            best = min(best, s)
            if s > 4 * best and i > 10:
                break
    finally:
        bar.close()
        model.load_state_dict(saved)
    at_min = lrs[min(range(len(smoothed)), key=smoothed.__getitem__)] if smoothed else start_lr
    return {"lr": lrs, "loss": losses, "smoothed": smoothed, "suggested_lr": at_min / 10}


# ----------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------


def load_profile(name: str) -> dict[str, Any]:
    """The CLI defaults of profile ``name``: built-in, updated from ``profiles/<name>.yaml``.

    The YAML file's ``train`` section (if the file and section exist) overrides
    the built-in values key by key.
    """
    check_choice("profile", name, tuple(PROFILES))
    values = dict(PROFILES[name])
    path = Path(__file__).resolve().parents[1] / "profiles" / f"{name}.yaml"
    if path.is_file():
        import yaml

        loaded = yaml.safe_load(path.read_text()) or {}
        section = loaded.get("train") if isinstance(loaded, dict) else None
        if isinstance(section, dict):
            known = {f.name for f in dataclasses.fields(TrainConfig)}
            values.update({k: v for k, v in section.items() if k in known})
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
    if text.lower() in ("none", "all"):
        return None
    return _number(text)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m resnet_nb.train",
        description="Train a ResNet with the resnet_nb engine (also under torchrun for DDP).",
        argument_default=argparse.SUPPRESS,  # only options given on the command line appear
    )
    p.add_argument("--profile", help="defaults to start from: quick (CPU, default) or full (GPU)")
    p.add_argument("--model", help="e.g. resnet20, resnet56, plain20, resnet18")
    p.add_argument("--stem", help="imagenet or cifar (resnet18..resnet152 only; default imagenet)")
    p.add_argument("--dataset", help=f"one of {', '.join(DATASETS)}")
    p.add_argument("--epochs", type=_number)
    p.add_argument("--batch-size", type=_number, help="global batch size (split among DDP ranks)")
    p.add_argument("--lr", type=_number, help="peak learning rate")
    p.add_argument("--schedule", help=f"one of {', '.join(SCHEDULES)}")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=_number)
    p.add_argument("--out", help="run folder for checkpoint.pt, history.json, metrics.json")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.pt if it exists")
    p.add_argument("--precision", help=f"one of {', '.join(PRECISIONS)}")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction)
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction)
    p.add_argument("--train-limit", type=_optional_int,
                   help="train on this many images ('all': every one)")
    p.add_argument("--val-size", type=_number)
    p.add_argument("--label-smoothing", type=_number)
    p.add_argument("--weight-decay", type=_number)
    p.add_argument("--momentum", type=_number)
    p.add_argument("--cutout", type=_number)
    p.add_argument("--warmup", help=f"one of {', '.join(WARMUPS)}")
    p.add_argument("--no-progress", action="store_true", help="no progress bars or epoch lines")
    return p


def config_from_args(argv: Sequence[str] | None = None) -> tuple[TrainConfig, bool]:
    """Parse command-line arguments into a validated config (and the progress flag)."""
    given = vars(_parser().parse_args(argv))
    values = load_profile(given.pop("profile", "quick"))
    progress = not given.pop("no_progress", False)
    values.update(given)
    config = TrainConfig(**values)
    config.validate()
    return config, progress


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m resnet_nb.train``; returns the exit code.

    Bad parameters exit with code 2 and a one-line message; missing or corrupt
    data with code 1.
    """
    try:
        config, progress = config_from_args(argv)
        result = fit(config, progress=progress)
    except ParameterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, NonFiniteLossError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result.out is not None and int(os.environ.get("RANK", "0")) == 0:
        # Say in the run folder how the run was started.
        metrics_path = Path(result.out) / METRICS
        if metrics_path.is_file():
            metrics = json.loads(metrics_path.read_text())
            args = list(sys.argv[1:] if argv is None else argv)
            metrics["command"] = shlex.join(["python", "-m", "resnet_nb.train", *args])
            _atomic_json(metrics, metrics_path)
    if progress and int(os.environ.get("RANK", "0")) == 0:
        last = result.history[-1] if result.history else {}
        test = f"{result.test['acc']:.2%}" if result.test else "n/a"
        print(
            f"done: {config.model} {len(result.history)} epochs, val acc "
            f"{last.get('val_acc') or float('nan'):.2%}, test acc {test}, "
            f"{result.wall_time_s:.0f}s on {result.device} ({result.precision})"
            + (f"; run folder {result.out}" if result.out else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
