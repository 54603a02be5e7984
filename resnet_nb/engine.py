"""The training engine: one loop for CPU, CUDA and MPS, single process or DDP.

What a step does
----------------
The training split lives on the device as one uint8 tensor. Each step gathers a
batch of it in a seeded random order, augments it there (random crop,
horizontal flip, optional cutout - see :mod:`resnet_nb.augment`), converts and
normalises it in one fused operation, and runs forward and backward under
autocast (bf16 where the device runs it fast, fp16 with a gradient scaler, or
fp32). SGD with Nesterov momentum updates the weights; BatchNorm and bias
parameters get no weight decay; each parameter group's rate is the schedule's
rate times the group's ``lr_scale`` (:mod:`resnet_nb.schedules`).

Around the steps
----------------
:func:`fit` builds the run, then calls its callbacks at the start and end of
the fit, of every epoch and after every step: the per-epoch line
(:class:`EpochLog`) and the run folder's checkpoints (:class:`Checkpointer`)
are callbacks, and so is gradual unfreezing in :mod:`resnet_nb.finetune`. The
validation split is evaluated every epoch, the test split once at the end.
``fit`` draws its random numbers from forked generators and restores cuDNN's
settings: it leaves the global state as it found it.

Under ``torchrun --nproc_per_node=N`` the same code runs DistributedDataParallel:
every rank draws the same global batch and augments it with the same
generator, then trains on its own slice.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet_nb.augment import Augment
from resnet_nb.config import PRECISIONS, TrainConfig
from resnet_nb.distributed import (
    Dist,
    all_reduce_sum,
    broadcast_buffers,
    init_distributed,
    shard_bounds,
)
from resnet_nb.errors import NonFiniteLossError, ParameterError
from resnet_nb.params import check_choice, check_device, check_positive_float, check_positive_int
from resnet_nb.schedules import LRSchedule, apply_lr, needs_warmup
from resnet_nb.state import TrainState

__all__ = [
    "Callback",
    "Result",
    "Run",
    "TrainStep",
    "fit",
    "evaluate",
    "predict_logits",
    "lr_range_test",
    "resolve_device",
    "model_device",
    "resolve_precision",
    "precision_name",
    "param_groups",
    "synthetic_data",
    "limit_train",
    "load_splits",
]


# ----------------------------------------------------------------------------
# device and precision
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


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (the CPU for a model without any)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _cpu_bf16_pays() -> bool:
    """Whether bf16 autocast surely speeds training up on this CPU: where it has AMX.

    With Intel's AMX matrix units ResNet-20 trains about 1.7x faster in bf16.
    With the AVX-512 bf16 instructions alone the answer depends on the CPU and
    the PyTorch version: a 2-core machine with ``avx512_bf16`` ran a ResNet-20
    step at 0.6-0.8x its fp32 speed, another (AMD EPYC, torch 2.14) at about
    1.5x. So ``"auto"`` takes bf16 on a CPU only with AMX; elsewhere ask for
    ``precision="bf16"`` where chapter 3's speed table shows that it pays.
    """
    try:
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(amx and amx()) and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """Return ``(autocast dtype or None for fp32, whether to use a gradient scaler)``.

    fp16 always comes with a gradient scaler (its small range underflows
    gradients otherwise); bf16 has fp32's range and needs none.
    """
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
        return torch.float16, True
    return None, False


def precision_name(dtype: torch.dtype | None) -> str:
    """The name of an autocast dtype from :func:`resolve_precision`: bf16, fp16 or fp32."""
    if dtype is torch.bfloat16:
        return "bf16"
    return "fp16" if dtype is torch.float16 else "fp32"


def _autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def param_groups(
    model: nn.Module, weight_decay: float, *, decay_all: bool = False
) -> list[dict[str, Any]]:
    """Two parameter groups: weights with ``weight_decay``, BN/bias params without.

    A parameter with one dimension or fewer is a bias or a normalisation
    scale/shift; decaying those only fights the normalisation (``decay_all``
    decays them anyway, as many tutorials do; the second group is then empty).
    Frozen parameters (``requires_grad=False``) are left out.
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 and not decay_all else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay, "lr_scale": 1.0},
        {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0},
    ]


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
    images = ((patterns[labels] * brightness + noise).clamp(0, 1) * 255).round()
    return ImageData(
        images=images.to(torch.uint8),
        labels=labels,
        classes=[f"class{i}" for i in range(num_classes)],
        source=f"synthetic (n={n}, seed={seed})",
    )


def load_splits(config: TrainConfig) -> tuple[Any, Any, Any]:
    """(train, val, test) of ``config.dataset``; val is ``val_size`` images held out."""
    from resnet_nb import data

    if config.dataset == "synthetic":
        full = synthetic_data(config.val_size + (config.train_limit or 2000) + 1000, seed=1234)
        n = len(full)
        rest = full.subset(torch.arange(0, n - 1000))
        test = full.subset(torch.arange(n - 1000, n))
        if config.val_size == 0:
            return rest, None, test
        train, val = data.train_val_split(rest, val_size=config.val_size, seed=0)
        return train, val, test
    loader = data.load_cifar10 if config.dataset == "cifar10" else data.load_fashion_mnist
    full = loader("train")
    if config.val_size == 0:
        return full, None, loader("test")
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
    model: nn.Module, images: torch.Tensor, augment: Augment, *,
    batch_size: int, dtype: torch.dtype | None,
) -> Iterator[tuple[int, torch.Tensor]]:
    device = model_device(model)
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


def _eval_sums(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, augment: Augment, *,
    batch_size: int, dtype: torch.dtype | None,
) -> list[float]:
    device = model_device(model)
    loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for start, out in _logits_batches(model, images, augment, batch_size=batch_size, dtype=dtype):
        y = labels[start : start + len(out)].to(device, non_blocking=True)
        loss += F.cross_entropy(out, y, reduction="sum").double()
        correct += (out.argmax(1) == y).sum()
    return [loss.item(), float(correct.item()), float(len(images))]


def evaluate_sharded(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, augment: Augment,
    ctx: Dist, *, batch_size: int, dtype: torch.dtype | None,
) -> dict[str, float]:
    """Loss and accuracy over all ranks: each evaluates its slice, the sums are reduced.

    Slices may differ by one image when the split does not divide by the number
    of processes; every image is counted exactly once.
    """
    lo, hi = shard_bounds(len(images), ctx)
    sums = _eval_sums(model, images[lo:hi], labels[lo:hi], augment,
                      batch_size=batch_size, dtype=dtype)
    loss, correct, count = all_reduce_sum(sums, model_device(model), ctx)
    return {"loss": loss / count, "acc": correct / count, "n": int(count)}


def predict_logits(
    model: nn.Module, data: Any, *, mean: Sequence[float], std: Sequence[float],
    batch_size: int = 500, precision: str = "auto", channels_last: bool = False,
) -> torch.Tensor:
    """Float32 logits ``[N, num_classes]`` (on the CPU) for every image of ``data``.

    ``data`` is an ImageData (or a uint8 ``[N, C, H, W]`` tensor); ``mean`` and
    ``std`` are the normalisation the model was trained with. Runs on the
    model's device, in eval mode, and leaves the model's mode as it was.
    """
    images = data if isinstance(data, torch.Tensor) else data.images
    dtype, _ = resolve_precision(precision, model_device(model))
    augment = Augment(mean=mean, std=std, channels_last=channels_last)
    parts = [out.cpu() for _, out in
             _logits_batches(model, images, augment, batch_size=batch_size, dtype=dtype)]
    return torch.cat(parts) if parts else torch.empty(0)


def evaluate(
    model: nn.Module, data: Any, *, mean: Sequence[float], std: Sequence[float],
    batch_size: int = 500, precision: str = "auto", channels_last: bool = False,
) -> dict[str, float]:
    """Cross-entropy loss and accuracy of ``model`` on ``data`` (an ImageData).

    Returns ``{"loss": ..., "acc": ..., "n": ...}``; accuracy is a fraction.
    """
    augment = Augment(mean=mean, std=std, channels_last=channels_last)
    dtype, _ = resolve_precision(precision, model_device(model))
    return evaluate_sharded(model, data.images, data.labels, augment, Dist(),
                            batch_size=batch_size, dtype=dtype)


# ----------------------------------------------------------------------------
# one training step
# ----------------------------------------------------------------------------


class TrainStep:
    """One optimisation step: forward and loss under autocast, backward, update.

    ``step(x, y)`` returns the batch's ``(loss, logits)``, detached and still on
    the device (reading them would wait for the device). Used by :func:`fit`,
    :func:`lr_range_test` and chapter 3's speed measurements alike.
    """

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, *,
        dtype: torch.dtype | None = None, scaler: Any = None,
        criterion: nn.Module | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.device = model_device(model)
        self.dtype = dtype
        self.scaler = scaler or torch.amp.GradScaler(self.device.type, enabled=False)
        self.criterion = criterion or nn.CrossEntropyLoss()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with _autocast(self.device, self.dtype):
            logits = self.model(x)
            loss = self.criterion(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), logits.detach()


def make_optimizer(
    groups: list[dict[str, Any]], config: TrainConfig, device: torch.device
) -> torch.optim.SGD:
    """The engine's SGD over ``groups`` (fused into one kernel per group on CUDA)."""
    for group in groups:
        group.setdefault("lr_scale", 1.0)
    return torch.optim.SGD(
        groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
        weight_decay=config.weight_decay,
        **({"fused": True} if device.type == "cuda" else {}),
    )


# ----------------------------------------------------------------------------
# callbacks, the run, the result
# ----------------------------------------------------------------------------


class Callback:
    """Hooks :func:`fit` calls; override the ones you need. Each gets the :class:`Run`.

    ``on_epoch_start`` runs before the epoch's first step (change what trains
    here: gradual unfreezing); ``on_step_end`` after every step; ``on_epoch_end``
    after the epoch's row of history was appended (``run.state.history[-1]``).
    Setting ``run.stop = True`` ends the fit after the current step.
    """

    def on_fit_start(self, run: Run) -> None: ...

    def on_epoch_start(self, run: Run) -> None: ...

    def on_step_end(self, run: Run) -> None: ...

    def on_epoch_end(self, run: Run) -> None: ...

    def on_fit_end(self, run: Run, result: Result) -> None: ...


@dataclass
class Run:
    """Everything a fit works with; callbacks read and change it."""

    config: TrainConfig
    ctx: Dist
    device: torch.device
    dtype: torch.dtype | None
    state: TrainState
    step_fn: TrainStep
    augment: Augment
    train: Any
    val: Any
    test: Any
    steps_per_epoch: int
    total_steps: int
    callbacks: list[Callback]
    progress: bool
    started: float = field(default_factory=time.perf_counter)
    wall_offset: float = 0.0
    resumed: bool = False
    stop: bool = False

    @property
    def model(self) -> nn.Module:
        return self.state.model

    @property
    def epochs(self) -> int:
        """Epochs this run will have trained when it ends (the last may be partial)."""
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def wall_time(self) -> float:
        return self.wall_offset + time.perf_counter() - self.started

    def emit(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)


@dataclass
class Result:
    """What :func:`fit` returns.

    ``history`` holds one dict per epoch (epoch, train_loss, train_acc,
    val_loss, val_acc, lr, images_per_s, epoch_time_s, wall_time_s); ``test``
    the test split's ``{"loss", "acc", "n"}`` (evaluated once, at the end) or
    None; ``mean``/``std`` the normalisation the model was trained with.
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
    warmup_end: int | None = None
    resumed_from_epoch: int | None = None

    def evaluate(self, data: Any, *, batch_size: int = 500) -> dict[str, float]:
        """:func:`evaluate` with this run's normalisation and precision."""
        return evaluate(self.model, data, mean=self.mean, std=self.std, batch_size=batch_size,
                        precision=self.precision, channels_last=self.config.channels_last)

    def predict_logits(self, data: Any, *, batch_size: int = 500) -> torch.Tensor:
        """:func:`predict_logits` with this run's normalisation and precision."""
        return predict_logits(self.model, data, mean=self.mean, std=self.std,
                              batch_size=batch_size, precision=self.precision,
                              channels_last=self.config.channels_last)


# ----------------------------------------------------------------------------
# fit
# ----------------------------------------------------------------------------


def fit(
    config: TrainConfig,
    *,
    model: nn.Module | None = None,
    train: Any = None,
    val: Any = None,
    test: Any = None,
    param_groups: list[dict[str, Any]] | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
) -> Result:
    """Train a model as ``config`` says and return a :class:`Result`.

    Parameters
    ----------
    config:
        The run's :class:`TrainConfig` (validated here).
    model:
        A module to train instead of ``build_model(config.model)``.
    train, val, test:
        ImageData splits. When ``train`` is None all three are loaded from
        ``config.dataset``. ``val`` or ``test`` may be None to skip them.
    param_groups:
        Optimiser parameter groups of ``model`` (default: weights with weight
        decay, norms and biases without). A group may carry ``lr_scale``: its
        rate is the schedule's rate times that factor.
    callbacks:
        :class:`Callback` objects, called after the built-in ones (the
        per-epoch line when ``progress``, checkpoints when ``config.out``).
    progress:
        Print a line per epoch and show progress bars (rank 0 only).
    """
    config.validate(model_names=[config.model] if model is not None else None)
    ctx = init_distributed(config.device)
    cudnn_benchmark = torch.backends.cudnn.benchmark
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            callbacks = _default_callbacks(config, ctx, progress) + list(callbacks)
            run = _setup(config, ctx, model, (train, val, test), param_groups, callbacks,
                         progress)
            _train(run)
            return _finish(run)
    finally:
        torch.backends.cudnn.benchmark = cudnn_benchmark
        ctx.close()


def _setup(
    config: TrainConfig, ctx: Dist, model: nn.Module | None, splits: tuple[Any, Any, Any],
    groups: list[dict[str, Any]] | None, callbacks: Sequence[Callback], progress: bool,
) -> Run:
    from resnet_nb.data import channel_stats
    from resnet_nb.models import weighted_depth

    device = _run_device(config, ctx)
    dtype, use_scaler = resolve_precision(config.precision, device)
    train, val, test = splits if splits[0] is not None else load_splits(config)
    train = limit_train(train, config.train_limit, seed=config.seed)
    _check_batch(config, ctx, len(train))
    mean, std = (config.mean, config.std) if config.mean else channel_stats(train)
    torch.manual_seed(config.seed)
    model = _build_model(config, model, train, device)
    steps_per_epoch = len(train) // config.batch_size
    total = steps_per_epoch * config.epochs
    total = min(total, config.max_steps) if config.max_steps else total
    schedule = LRSchedule(config.schedule, peak_lr=config.lr, total_steps=total,
                          warmup=needs_warmup(config.warmup, config.schedule,
                                              weighted_depth(model)))
    optimizer = make_optimizer(
        groups or param_groups(model, config.weight_decay, decay_all=config.decay_all),
        config, device,
    )
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    state = TrainState(
        model=model, optimizer=optimizer, schedule=schedule, scaler=scaler,
        generators={"augment": torch.Generator(device=device).manual_seed(config.seed),
                    "order": torch.Generator().manual_seed(config.seed + 1)},
        config=config.to_dict(), mean=tuple(mean), std=tuple(std), classes=list(train.classes),
    )
    augment = Augment(mean=mean, std=std, padding=config.padding, flip=config.flip,
                      padding_mode=config.padding_mode, cutout=config.cutout,
                      channels_last=config.channels_last)
    step_fn = TrainStep(_wrap_model(model, config, ctx, device), optimizer, dtype=dtype,
                        scaler=scaler,
                        criterion=nn.CrossEntropyLoss(label_smoothing=config.label_smoothing))
    run = Run(config=config, ctx=ctx, device=device, dtype=dtype, state=state, step_fn=step_fn,
              augment=augment, train=train, val=val, test=test,
              steps_per_epoch=steps_per_epoch, total_steps=total,
              callbacks=list(callbacks), progress=progress)
    return run


def _run_device(config: TrainConfig, ctx: Dist) -> torch.device:
    device = resolve_device(config.device)
    if ctx.active and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    if device.type == "cuda":
        # Every batch has the same shape, so cuDNN's autotuner pays for itself
        # (fit restores the setting when it returns).
        torch.backends.cudnn.benchmark = True
    return device


def _check_batch(config: TrainConfig, ctx: Dist, n_train: int) -> None:
    if config.batch_size % ctx.world:
        raise ParameterError(
            f"parameter batch_size={config.batch_size!r} is invalid: the global batch must "
            f"divide evenly among the {ctx.world} processes"
        )
    if config.batch_size > n_train:
        raise ParameterError(
            f"parameter batch_size={config.batch_size!r} is invalid: it is larger than the "
            f"{n_train} training images; choose batch_size <= {n_train}"
        )


def _build_model(config: TrainConfig, model: nn.Module | None, train: Any,
                 device: torch.device) -> nn.Module:
    if model is None:
        from resnet_nb.models import build_model

        model = build_model(config.model, num_classes=len(train.classes),
                            in_channels=train.images.shape[1], stem=config.stem)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    return model.to(device=device, memory_format=memory_format)


def _wrap_model(model: nn.Module, config: TrainConfig, ctx: Dist,
                device: torch.device) -> nn.Module:
    """The module the steps call: DDP around the model, and ``torch.compile`` around that."""
    wrapped = model
    if ctx.active:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        # On one GPU, also replay each step's kernels as a CUDA graph: a small
        # network's step is otherwise bound by the host launching its kernels.
        mode = "reduce-overhead" if device.type == "cuda" and not ctx.active else None
        wrapped = torch.compile(wrapped, mode=mode)  # type: ignore[assignment]
    return wrapped


def _default_callbacks(config: TrainConfig, ctx: Dist, progress: bool) -> list[Callback]:
    """The per-epoch line and the run folder's checkpoints (which checks the folder now)."""
    from resnet_nb.callbacks import Checkpointer, EpochLog

    built_in: list[Callback] = []
    if config.out is not None:
        built_in.append(Checkpointer(config.out, resume=config.resume,
                                     overwrite=config.overwrite, main=ctx.main))
    if progress:
        built_in.append(EpochLog())
    return built_in


def _train(run: Run) -> None:
    run.emit("on_fit_start")
    images = run.train.images.to(run.device)
    labels = run.train.labels.to(run.device)
    val = None
    if run.val is not None:
        val = (run.val.images.to(run.device), run.val.labels.to(run.device))
    while run.state.epoch < run.epochs and not run.stop:
        run.emit("on_epoch_start")
        row = _train_epoch(run, images, labels)
        if val is not None:
            metrics = evaluate_sharded(run.model, *val, run.augment, run.ctx,
                                       batch_size=_eval_batch(run), dtype=run.dtype)
            row["val_loss"], row["val_acc"] = metrics["loss"], metrics["acc"]
        row["epoch_time_s"] = time.perf_counter() - row.pop("_t0")
        row["wall_time_s"] = run.wall_time()
        run.state.history.append(row)
        run.state.epoch += 1
        run.emit("on_epoch_end")


def _eval_batch(run: Run) -> int:
    return max(run.config.batch_size, 500)


def _train_epoch(run: Run, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    t0 = time.perf_counter()
    state, cfg, ctx = run.state, run.config, run.ctx
    state.model.train()
    order = torch.randperm(len(images), generator=state.generators["order"]).to(run.device)
    lo, hi = shard_bounds(cfg.batch_size, ctx)
    first = state.epoch * run.steps_per_epoch
    n_steps = min(run.steps_per_epoch, run.total_steps - first)
    sums = torch.zeros(2, dtype=torch.float64, device=run.device)
    monitor = _FiniteMonitor(run)
    bar = _progress_bar(run, n_steps)
    lr = 0.0
    for i in range(n_steps):
        state.step = first + i
        lr = state.schedule.lr(state.step)
        apply_lr(state.optimizer, lr)
        index = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
        x = run.augment.train(images[index], state.generators["augment"])[lo:hi]
        y = labels[index][lo:hi]
        loss, logits = run.step_fn(x, y)
        hits = (logits.argmax(1) == y).sum()
        sums += torch.stack([loss.double() * len(y), hits.double()])
        state.schedule.observe(state.step, lambda: 1.0 - _global_acc(hits, len(y), run))
        monitor.add(state.step, loss, last=i == n_steps - 1, bar=bar, lr=lr)
        bar.update(1)
        run.emit("on_step_end")
        if run.stop:
            break
    bar.close()
    state.step = first + i + 1
    train_time = time.perf_counter() - t0
    loss_sum, correct, count = all_reduce_sum([*sums.tolist(), float((i + 1) * (hi - lo))],
                                              run.device, ctx)
    broadcast_buffers(state.model, ctx)
    _check_batchnorm_finite(state.model, state.epoch)
    return {"epoch": state.epoch + 1, "train_loss": loss_sum / count,
            "train_acc": correct / count, "val_loss": None, "val_acc": None, "lr": lr,
            "images_per_s": (i + 1) * cfg.batch_size / train_time, "_t0": t0}


def _global_acc(hits: torch.Tensor, n: int, run: Run) -> float:
    correct, count = all_reduce_sum([float(hits.item()), float(n)], run.device, run.ctx)
    return correct / count


def _finish(run: Run) -> Result:
    broadcast_buffers(run.model, run.ctx)
    test_metrics = None
    if run.test is not None:
        test_metrics = evaluate_sharded(
            run.model, run.test.images.to(run.device), run.test.labels.to(run.device),
            run.augment, run.ctx, batch_size=_eval_batch(run), dtype=run.dtype,
        )
    out = Path(run.config.out) if run.config.out is not None else None
    result = Result(
        model=run.model, history=run.state.history, test=test_metrics, config=run.config,
        mean=run.state.mean, std=run.state.std, device=str(run.device),
        precision=precision_name(run.dtype), out=out, wall_time_s=run.wall_time(),
        warmup_end=run.state.schedule.warmup_end,
        resumed_from_epoch=run.state.history[0]["epoch"] - 1 if run.resumed else None,
    )
    run.emit("on_fit_end", result)
    return result


# ----------------------------------------------------------------------------
# divergence and progress
# ----------------------------------------------------------------------------


class _FiniteMonitor:
    """Checks the losses for NaN/inf every few steps (every step on a CPU).

    Reading a loss waits for the device, so on a GPU losses are gathered and
    checked 25 at a time; the error names the first bad iteration all the same.
    """

    def __init__(self, run: Run) -> None:
        self.every = 1 if run.device.type == "cpu" else 25
        self.steps_per_epoch = run.steps_per_epoch
        self.pending: list[tuple[int, torch.Tensor]] = []
        self.last: tuple[int, float] | None = None

    def add(self, step: int, loss: torch.Tensor, *, last: bool, bar: Any, lr: float) -> None:
        self.pending.append((step, loss))
        if len(self.pending) < self.every and not last:
            return
        values = torch.stack([v for _, v in self.pending]).float().cpu()
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            bad = int((~finite).nonzero()[0])
            if bad > 0:
                self.last = (self.pending[bad - 1][0], float(values[bad - 1]))
            self._raise(self.pending[bad][0], float(values[bad]))
        self.last = (self.pending[-1][0], float(values[-1]))
        self.pending = []
        bar.set_postfix(loss=f"{self.last[1]:.3f}", lr=f"{lr:.4f}", refresh=False)

    def _raise(self, step: int, value: float) -> None:
        epoch, i = divmod(step, self.steps_per_epoch)
        before = (f"the last finite loss was {self.last[1]:.4g} at iteration {self.last[0] + 1}"
                  if self.last is not None else "no finite loss was seen before it")
        raise NonFiniteLossError(
            f"training loss became {value} at epoch {epoch + 1}, iteration {step + 1} "
            f"(step {i + 1} of the epoch); {before}. "
            "Try a lower lr, fp32 precision, or check the data."
        )


def _check_batchnorm_finite(model: nn.Module, epoch: int) -> None:
    """Raise :class:`NonFiniteLossError` when a BatchNorm's running statistics hold NaN/inf.

    They can diverge while the loss still looks finite (the loss uses batch
    statistics in training mode); evaluation would then print garbage.
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_var is not None:
            if not (torch.isfinite(module.running_mean).all()
                    and torch.isfinite(module.running_var).all()):
                raise NonFiniteLossError(
                    f"the BatchNorm statistics of {name or 'the model'} became NaN or infinite "
                    f"in epoch {epoch + 1}: training diverged. Try a lower lr, fp32 "
                    "precision, or check the data."
                )


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


def _progress_bar(run: Run, total: int, desc: str | None = None) -> Any:
    tqdm = _tqdm()
    # A text bar redrawn in a log file (stderr not a terminal) is noise: the
    # one line per epoch says the same.
    interactive = tqdm.__module__ != "tqdm.std" or sys.stderr.isatty()
    return tqdm(total=total, desc=desc or f"epoch {run.state.epoch + 1}/{run.epochs}",
                leave=False, unit="batch",
                disable=not (run.progress and run.ctx.main and interactive))


# ----------------------------------------------------------------------------
# LR range test
# ----------------------------------------------------------------------------


def lr_range_test(
    model: nn.Module, train: Any, *, batch_size: int = 128, start_lr: float = 1e-4,
    end_lr: float = 10.0, steps: int = 100, momentum: float = 0.9,
    weight_decay: float = 5e-4, precision: str = "auto", channels_last: bool = False,
    seed: int = 0, progress: bool = True,
) -> dict[str, Any]:
    """Sweep the learning rate exponentially and record the training loss (Smith, 2017).

    Trains ``model`` (on its current device) with :class:`TrainStep` for up to
    ``steps`` iterations, the rate growing from ``start_lr`` to ``end_lr``,
    stopping early when the smoothed loss exceeds 4x its minimum. The model's
    weights are restored afterwards. Returns ``{"lr", "loss", "smoothed",
    "suggested_lr"}``: the suggestion is the rate at the smoothed minimum / 10.
    """
    from resnet_nb.data import channel_stats

    for name, value in (("batch_size", batch_size), ("steps", steps)):
        check_positive_int(name, value)
    check_positive_float("start_lr", start_lr)
    check_positive_float("end_lr", end_lr)
    if end_lr <= start_lr:
        raise ParameterError(f"parameter end_lr={end_lr!r} is invalid: it must exceed start_lr")
    config = TrainConfig(lr=start_lr, momentum=momentum, nesterov=momentum > 0,
                         weight_decay=weight_decay, batch_size=batch_size)
    device = model_device(model)
    dtype, use_scaler = resolve_precision(precision, device)
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = make_optimizer(param_groups(model, weight_decay), config, device)
    step_fn = TrainStep(model, optimizer, dtype=dtype,
                        scaler=torch.amp.GradScaler(device.type, enabled=use_scaler))
    mean, std = channel_stats(train)
    augment = Augment(mean=mean, std=std, channels_last=channels_last)
    factor = (end_lr / start_lr) ** (1 / max(1, steps - 1))
    curve: dict[str, list[float]] = {"lr": [], "loss": [], "smoothed": []}
    model.train()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            batches = _sweep_batches(train, batch_size, steps, augment, seed, device)
            for i, (x, y) in enumerate(batches):
                apply_lr(optimizer, start_lr * factor**i)
                value = float(step_fn(x, y)[0].item())
                if not _record_loss(curve, start_lr * factor**i, value):
                    break
    finally:
        model.load_state_dict(saved)
    smoothed = curve["smoothed"]
    at_min = curve["lr"][smoothed.index(min(smoothed))] if smoothed else start_lr
    return {**curve, "suggested_lr": at_min / 10}


def _sweep_batches(
    train: Any, batch_size: int, steps: int, augment: Augment, seed: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches for the range test, drawn as :func:`fit` draws them, on ``device``."""
    images, labels = train.images.to(device), train.labels.to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    order_gen = torch.Generator().manual_seed(seed + 1)
    per_epoch = max(1, len(images) // batch_size)
    order = torch.randperm(len(images), generator=order_gen).to(device)
    for i in range(steps):
        if i and i % per_epoch == 0:
            order = torch.randperm(len(images), generator=order_gen).to(device)
        index = order[(i % per_epoch) * batch_size : (i % per_epoch + 1) * batch_size]
        yield augment.train(images[index], gen), labels[index]


def _record_loss(curve: dict[str, list[float]], lr: float, value: float) -> bool:
    """Append one point to the range test's curve; False when the sweep should stop."""
    if not math.isfinite(value):
        return False
    i = len(curve["loss"])
    previous = curve["smoothed"][-1] * (1 - 0.9**i) if i else 0.0
    avg = 0.9 * previous + 0.1 * value
    smoothed = avg / (1 - 0.9 ** (i + 1))
    curve["lr"].append(lr)
    curve["loss"].append(value)
    curve["smoothed"].append(smoothed)
    return not (smoothed > 4 * min(curve["smoothed"]) and i > 10)
