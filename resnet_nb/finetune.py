"""Fine-tuning: pretrained weights moved to a new task.

Where the weights come from
---------------------------
* :func:`load_checkpoint_source`: a checkpoint written by :func:`resnet_nb.train.fit`
  (``python -m resnet_nb.train --out DIR`` writes ``DIR/checkpoint.pt``). Works offline.
* :func:`load_imagenet_source`: torchvision's ImageNet weights for ResNet-18 or
  ResNet-50, read from a local ``.pth`` file or downloaded into torch's hub cache.
  Our :class:`resnet_nb.models.ResNet` has torchvision's parameter names, so the
  file loads as it is.

Both check the architecture: a state dict of another network raises
:class:`ArchitectureMismatchError` naming the missing and unexpected keys; a head
with another number of classes is replaced explicitly (and the returned notes say so).

What is trained
---------------
:func:`apply_strategy` sets a model up for one of :data:`STRATEGIES`:

``scratch``
    every weight trained, from a random start (no pretrained weights);
``linear_probe``
    only the classifier ``fc`` trains; every other BatchNorm becomes a
    :class:`FrozenBatchNorm2d`, which stays in eval mode under ``model.train()``,
    so its running statistics never move;
``full``
    every weight trained from the pretrained start, one learning rate;
``discriminative``
    every weight trained, the learning rate decaying by ``lr_decay`` per stage
    from the head towards the input (:func:`discriminative_param_groups`);
``gradual``
    the head first, then one more stage at a time towards the input
    (:func:`unfreezing_stages`, applied by the :class:`GradualUnfreezing` callback).

:func:`transfer` runs a strategy on a target dataset as one call of the training
engine (:func:`resnet_nb.train.fit`): the same augmentation, mixed precision,
schedule and evaluation as every other run in the book. Discriminative rates
are parameter groups with an ``lr_scale``; gradual unfreezing is a callback
under one optimiser and one schedule; the source's normalisation is the
run's ``mean``/``std``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet_nb.data import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    ImageData,
    channel_stats,
    load_cifar10,
    load_fashion_mnist,
    load_image_folder,
    train_val_split,
)
from resnet_nb.engine import Callback, Run
from resnet_nb.errors import ArchitectureMismatchError, WeightsNotFoundError
from resnet_nb.params import ParameterError, check_choice, check_positive_float, check_positive_int
from resnet_nb.state import check_architecture

__all__ = [
    "STRATEGIES",
    "TARGETS",
    "IMAGENET_ARCHITECTURES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ArchitectureMismatchError",
    "WeightsNotFoundError",
    "Source",
    "FrozenBatchNorm2d",
    "TransferResult",
    "load_checkpoint_source",
    "load_imagenet_source",
    "load_weights",
    "replace_head",
    "layer_groups",
    "freeze",
    "unfreeze",
    "apply_strategy",
    "discriminative_param_groups",
    "unfreezing_stages",
    "sample_per_class",
    "resize_images",
    "load_target",
    "transfer",
]

STRATEGIES = ("scratch", "linear_probe", "full", "discriminative", "gradual")
TARGETS = ("fashion_mnist", "cifar10", "folder")
IMAGENET_ARCHITECTURES = ("resnet18", "resnet50")
#: The normalisation torchvision's ImageNet weights were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_HEAD = "fc"


# ----------------------------------------------------------------------------
# weight sources
# ----------------------------------------------------------------------------


@dataclass
class Source:
    """A pretrained network and what it expects of its inputs.

    ``model`` keeps its original head (``classes`` outputs); :func:`transfer`
    copies it and replaces the head for the target task. Inputs are RGB images
    of ``image_size`` pixels normalised with ``mean``/``std`` (the statistics the
    weights were trained with). ``notes`` records what loading did. ``stem`` is
    the stem of an ImageNet-family ``architecture`` (``None``: its ImageNet stem),
    so that a network trained from scratch for comparison has the same shape.
    """

    model: nn.Module
    architecture: str
    description: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int
    classes: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    stem: str | None = None


def load_weights(
    model: nn.Module, state: dict[str, torch.Tensor], *, source: str = "the state dict"
) -> list[str]:
    """Load ``state`` into ``model``, checking the architecture; return notes on what changed.

    Every key outside the classifier ``fc`` must be present on both sides with the
    same shape, else :class:`ArchitectureMismatchError` names the missing and
    unexpected keys (or the differing shapes). When only ``fc`` differs in shape -
    another number of classes - the model keeps its own, freshly initialised head
    and a note says so.
    """
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArchitectureMismatchError(f"{source} is not a state dict of tensors")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ArchitectureMismatchError(
            f"{source} does not fit {type(model).__name__}: "
            f"{len(missing)} missing key(s) ({_shown(missing)}) and "
            f"{len(unexpected)} unexpected key(s) ({_shown(unexpected)}). "
            "Load it into the architecture it was saved from."
        )
    shapes = [k for k in own if own[k].shape != state[k].shape]
    body = [k for k in shapes if not k.startswith(_HEAD + ".")]
    if body:
        shown = ", ".join(
            f"{k}: {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in body[:4]
        )
        raise ArchitectureMismatchError(
            f"{source} does not fit {type(model).__name__}: {len(body)} tensor(s) differ in shape "
            f"({shown}{', ...' if len(body) > 4 else ''}). Check the model name, stem and "
            "input channels."
        )
    notes = []
    if shapes:
        saved_classes = state[_HEAD + ".weight"].shape[0] if _HEAD + ".weight" in state else "?"
        state = {k: v for k, v in state.items() if k not in shapes}
        notes.append(
            f"head replaced: {source} has a {saved_classes}-class classifier, the model has "
            f"{own[_HEAD + '.weight'].shape[0]} classes; {_HEAD} keeps its new random "
            "initialisation"
        )
    model.load_state_dict(state, strict=not shapes)
    return notes


def _shown(keys: Sequence[str], limit: int = 5) -> str:
    if not keys:
        return "none"
    more = f", ... {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _check_file(path: str | Path, what: str, fix: str) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        raise WeightsNotFoundError(f"{what} {file.absolute()} does not exist: {fix}")
    return file


def load_checkpoint_source(
    path: str | Path, *, into: nn.Module | None = None, verbose: bool = True
) -> Source:
    """A :class:`Source` from a checkpoint written by :func:`resnet_nb.train.fit`.

    The network is rebuilt from the checkpoint's config (``into`` loads the
    weights into a model you built instead, checking it has the same
    architecture). Inputs are normalised with the statistics of the run's
    training split, stored in the checkpoint. Raises :class:`WeightsNotFoundError`
    (a FileNotFoundError) saying how to make the checkpoint when ``path`` is missing.
    """
    from resnet_nb.models import build_model
    from resnet_nb.train import load_checkpoint

    file = _check_file(
        path,
        "checkpoint",
        "train one with `python -m resnet_nb.train --profile quick --out DIR` "
        "(it writes DIR/checkpoint.pt) and pass its path",
    )
    saved = load_checkpoint(file)
    if not isinstance(saved, dict) or "model" not in saved or "config" not in saved:
        raise ArchitectureMismatchError(
            f"{file} is not a checkpoint written by resnet_nb.train.fit (it has no 'model' and "
            "'config' entries); for a bare state dict use load_weights"
        )
    state, config = saved["model"], saved["config"]
    name = config.get("model", "?")
    classes = saved.get("classes") or _dataset_classes(config.get("dataset"), state)
    if into is None:
        in_channels = int(state["conv1.weight"].shape[1]) if "conv1.weight" in state else 3
        into = build_model(
            name, num_classes=len(classes), in_channels=in_channels, stem=config.get("stem")
        )
    else:
        check_architecture(into, saved, source=f"checkpoint {file}")
    notes = load_weights(into, state, source=f"checkpoint {file} ({name})")
    stats = saved.get("stats") or {}
    mean = tuple(float(m) for m in stats.get("mean", ()))
    std = tuple(float(s) for s in stats.get("std", ()))
    if not mean or not std:
        raise ArchitectureMismatchError(f"{file} holds no normalisation statistics ('stats')")
    source = Source(
        model=into.eval(),
        architecture=name,
        description=(
            f"checkpoint {file}: {name} trained {saved.get('epoch', '?')} epoch(s) on "
            f"{config.get('dataset', '?')}"
        ),
        mean=mean,
        std=std,
        image_size=32,
        classes=classes,
        notes=notes,
        stem=config.get("stem"),
    )
    _say(source.notes, verbose)
    return source


def _dataset_classes(dataset: Any, state: dict[str, torch.Tensor]) -> list[str]:
    """Class names for checkpoints written before they were stored in the checkpoint."""
    known = {"cifar10": CIFAR10_CLASSES, "fashion_mnist": FASHION_MNIST_CLASSES}
    if dataset in known:
        return list(known[dataset])
    n = int(state[_HEAD + ".weight"].shape[0]) if _HEAD + ".weight" in state else 10
    return [f"class{i}" for i in range(n)]


def _say(notes: Sequence[str], verbose: bool) -> None:
    if verbose:
        for note in notes:
            print(note)


def load_imagenet_source(
    architecture: str = "resnet18",
    *,
    path: str | Path | None = None,
    download: bool = True,
    image_size: int = 224,
    verbose: bool = True,
) -> Source:
    """A :class:`Source` with torchvision's ImageNet weights (IMAGENET1K_V1) in our ResNet.

    ``path`` is a local ``.pth`` state dict (e.g. ``resnet18-f37072fd.pth``).
    Without it, the file is taken from torch's hub cache, downloading it first
    when ``download`` is true. Offline, :class:`WeightsNotFoundError` names the
    URL to fetch and the folder to put it in. Inputs are RGB, resized to
    ``image_size`` (224 is what the weights were trained at) and normalised
    with :data:`IMAGENET_MEAN`/:data:`IMAGENET_STD`.
    """
    from torchvision.models import get_weight

    from resnet_nb.models import build_model

    check_choice("architecture", architecture, IMAGENET_ARCHITECTURES)
    check_positive_int("image_size", image_size)
    weights = get_weight(f"{'ResNet18' if architecture == 'resnet18' else 'ResNet50'}"
                         "_Weights.IMAGENET1K_V1")
    if path is not None:
        file = _check_file(path, "weights file", f"download {weights.url} to that path")
    else:
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        file = hub / Path(weights.url).name
        if not file.is_file():
            fix = (
                f"fetch {weights.url} and put it at {file}, or pass path= to a copy of it "
                "(a reader offline can copy the file from a machine that is online)"
            )
            if not download:
                raise WeightsNotFoundError(
                    f"ImageNet weights for {architecture} are not cached and download=False: {fix}"
                )
            try:
                torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True)
            except (OSError, RuntimeError) as exc:
                raise WeightsNotFoundError(
                    f"could not download the ImageNet weights for {architecture} "
                    f"({type(exc).__name__}: {exc}): {fix}"
                ) from None
    state = torch.load(file, map_location="cpu", weights_only=True)
    model = build_model(architecture, num_classes=1000)
    notes = load_weights(model, state, source=f"ImageNet weights {file.name}")
    source = Source(
        model=model.eval(),
        architecture=architecture,
        description=f"torchvision ImageNet weights ({weights}) from {file}",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        image_size=image_size,
        classes=list(weights.meta["categories"]),
        notes=notes,
    )
    _say(source.notes, verbose)
    return source


# ----------------------------------------------------------------------------
# heads, groups, freezing
# ----------------------------------------------------------------------------


def replace_head(model: nn.Module, num_classes: int, *, seed: int = 0) -> nn.Module:
    """Give ``model`` a new classifier ``fc`` with ``num_classes`` outputs (seeded init).

    The new layer has PyTorch's default ``nn.Linear`` initialisation drawn from
    a generator seeded with ``seed``; the model is changed in place and returned.
    """
    check_positive_int("num_classes", num_classes)
    old = getattr(model, _HEAD, None)
    if not isinstance(old, nn.Linear):
        raise ArchitectureMismatchError(
            f"{type(model).__name__} has no linear classifier named {_HEAD!r} to replace"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        new = nn.Linear(old.in_features, num_classes)
    setattr(model, _HEAD, new.to(old.weight.device))
    return model


def layer_groups(model: nn.Module) -> list[tuple[str, list[str]]]:
    """The model's parameters in groups from the input to the output.

    ``("stem", [conv1, bn1 ...])``, one group per stage (``layer1``, ``layer2``,
    ...) and ``("head", ["fc"])``: each group is a name and the top-level modules
    it holds. A final normalisation after the last stage (pre-activation ResNets)
    joins the last stage.
    """
    groups: list[tuple[str, list[str]]] = []
    stem: list[str] = []
    for name, child in model.named_children():
        if not any(True for _ in child.parameters()):
            continue
        if name == _HEAD:
            continue
        if name.startswith("layer"):
            groups.append((name, [name]))
        elif not groups:
            stem.append(name)
        else:
            groups[-1][1].append(name)
    if not groups or not isinstance(getattr(model, _HEAD, None), nn.Linear):
        raise ArchitectureMismatchError(
            f"{type(model).__name__} is not a ResNet with stages layer1.. and a head {_HEAD!r}"
        )
    return ([("stem", stem)] if stem else []) + groups + [("head", [_HEAD])]


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d that stays in eval mode, whatever ``model.train()`` says.

    It normalises with its running statistics, never updates them, and its
    scale and shift do not require gradients: a frozen backbone stays frozen.
    """

    def train(self, mode: bool = True) -> FrozenBatchNorm2d:
        del mode
        return super().train(False)

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d) -> FrozenBatchNorm2d:
        """A frozen copy of ``bn`` sharing its parameter and buffer tensors."""
        return _share_batchnorm(bn, cls, trainable=False).eval()

    def to_batchnorm(self) -> nn.BatchNorm2d:
        """A trainable BatchNorm2d sharing this module's tensors."""
        return _share_batchnorm(self, nn.BatchNorm2d, trainable=True)


def _share_batchnorm(bn: nn.BatchNorm2d, kind: type[nn.BatchNorm2d], *, trainable: bool) -> Any:
    """A ``kind`` module holding ``bn``'s very tensors; its scale/shift train if ``trainable``."""
    new = kind(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
               track_running_stats=bn.track_running_stats)
    if bn.affine:
        new.weight, new.bias = bn.weight, bn.bias
        new.weight.requires_grad_(trainable)
        new.bias.requires_grad_(trainable)
    new.running_mean, new.running_var = bn.running_mean, bn.running_var
    new.num_batches_tracked = bn.num_batches_tracked
    return new


def _swap_batchnorms(module: nn.Module, convert: Callable[[nn.Module], nn.Module | None]) -> None:
    for name, child in module.named_children():
        new = convert(child)
        if new is not None:
            setattr(module, name, new)
        else:
            _swap_batchnorms(child, convert)


def _modules_of(model: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    unknown = [n for n in names if not isinstance(getattr(model, n, None), nn.Module)]
    if unknown:
        raise ParameterError(f"{type(model).__name__} has no module(s) named {unknown}")
    return [getattr(model, n) for n in names]


def freeze(
    model: nn.Module, names: Sequence[str] | None = None, *, batchnorm: bool = True
) -> nn.Module:
    """Freeze the top-level modules ``names`` (default: all but the head ``fc``).

    Their parameters stop requiring gradients and their BatchNorms become
    :class:`FrozenBatchNorm2d`, so neither the weights nor the running
    statistics change while the rest of the model trains. ``batchnorm=False``
    only stops the gradients: the BatchNorms then still follow ``model.train()``
    and their running statistics drift to the new data (the pitfall the
    default avoids). In place; returns ``model``.
    """
    if names is None:
        names = [n for _, group in layer_groups(model)[:-1] for n in group]
    for module in _modules_of(model, names):
        for param in module.parameters():
            param.requires_grad_(False)
        if not batchnorm:
            continue
        if isinstance(module, nn.BatchNorm2d) and not isinstance(module, FrozenBatchNorm2d):
            setattr(model, _name_in(model, module), FrozenBatchNorm2d.from_batchnorm(module))
        else:
            _swap_batchnorms(
                module,
                lambda m: FrozenBatchNorm2d.from_batchnorm(m)
                if isinstance(m, nn.BatchNorm2d) and not isinstance(m, FrozenBatchNorm2d)
                else None,
            )
    return model


def unfreeze(model: nn.Module, names: Sequence[str] | None = None) -> nn.Module:
    """Undo :func:`freeze` for the top-level modules ``names`` (default: all). In place."""
    if names is None:
        names = [n for _, group in layer_groups(model) for n in group]
    for module in _modules_of(model, names):
        if isinstance(module, FrozenBatchNorm2d):
            setattr(model, _name_in(model, module), module.to_batchnorm())
        else:
            _swap_batchnorms(
                module, lambda m: m.to_batchnorm() if isinstance(m, FrozenBatchNorm2d) else None
            )
    for module in _modules_of(model, names):
        for param in module.parameters():
            param.requires_grad_(True)
    return model


def _name_in(model: nn.Module, module: nn.Module) -> str:
    return next(n for n, m in model.named_children() if m is module)


def discriminative_param_groups(
    model: nn.Module, *, lr: float | None = None, lr_decay: float = 0.5,
    weight_decay: float = 5e-4,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups with layer-wise learning-rate decay.

    The head's group has ``lr_scale`` 1, the last stage's ``lr_decay``, the one
    before ``lr_decay**2``, and so on to the stem: under
    :func:`resnet_nb.train.fit` each group trains at the schedule's rate times
    its scale (with ``lr``, each group's ``"lr"`` is also set to ``lr`` times
    its scale, for a plain optimizer). Each layer group is split in two,
    weights with ``weight_decay`` and BatchNorm/bias parameters without (as
    :func:`resnet_nb.train.param_groups` does). Groups are ordered from the
    input to the output and carry a ``"name"``. Frozen parameters are included:
    SGD skips them while they have no gradient, so unfreezing them later needs
    no new optimizer.
    """
    if lr is not None:
        check_positive_float("lr", lr)
    if isinstance(lr_decay, bool) or not isinstance(lr_decay, (int, float)) or not 0 < lr_decay <= 1:
        raise ParameterError(
            f"parameter lr_decay={lr_decay!r} is invalid: it must be in (0, 1], e.g. 0.5"
        )
    groups = layer_groups(model)
    out: list[dict[str, Any]] = []
    for depth, (name, modules) in enumerate(groups):
        scale = float(lr_decay) ** (len(groups) - 1 - depth)
        params = [p for m in _modules_of(model, modules) for p in m.parameters()]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        for kind, plist, wd in (("weights", decay, weight_decay), ("norms", no_decay, 0.0)):
            if plist:
                group = {"name": f"{name}.{kind}", "params": plist, "lr_scale": scale,
                         "weight_decay": wd}
                if lr is not None:
                    group["lr"] = lr * scale
                out.append(group)
    return out


def unfreezing_stages(model: nn.Module, epochs: int) -> list[tuple[int, list[str]]]:
    """Gradual unfreezing: ``(epochs, trainable group names)`` per stage, head first.

    Stage 1 trains the head; each further stage adds the next group towards the
    input (the stem joins the first stage). ``epochs`` are shared out as evenly
    as they go, the last stage (everything trainable) taking the remainder;
    with fewer epochs than groups, the first stages unfreeze several groups at once.
    """
    check_positive_int("epochs", epochs)
    names = [name for name, _ in layer_groups(model)]
    if names[0] == "stem":
        names = names[1:]
        stem = True
    else:
        stem = False
    order = names[::-1]  # head, last stage, ..., first stage
    n_stages = min(len(order), epochs)
    # Split the groups into n_stages chunks, as even as rounding allows.
    bounds = [round(len(order) * (i + 1) / n_stages) for i in range(n_stages)]
    stages: list[tuple[int, list[str]]] = []
    for i, end in enumerate(bounds):
        trainable = order[:end] + (["stem"] if stem and end == len(order) else [])
        share = epochs // n_stages + (1 if i >= n_stages - epochs % n_stages else 0)
        stages.append((share, trainable))
    return stages


def _group_modules(model: nn.Module, group_names: Sequence[str]) -> list[str]:
    lookup = dict(layer_groups(model))
    return [m for g in group_names for m in lookup[g]]


def apply_strategy(model: nn.Module, strategy: str, *, freeze_batchnorm: bool = True) -> nn.Module:
    """Freeze or unfreeze ``model`` for the start of ``strategy`` (in place).

    ``linear_probe`` and ``gradual`` start with everything but the head frozen
    (with ``freeze_batchnorm=False`` the BatchNorm statistics are left free to
    drift, see :func:`freeze`); the other strategies train every parameter.
    """
    check_choice("strategy", strategy, STRATEGIES)
    unfreeze(model)
    if strategy in ("linear_probe", "gradual"):
        freeze(model, batchnorm=freeze_batchnorm)
    return model


# ----------------------------------------------------------------------------
# target data
# ----------------------------------------------------------------------------


def sample_per_class(data: ImageData, k: int, *, seed: int = 0) -> ImageData:
    """``k`` images of every class, drawn at random with ``seed`` (a label budget).

    Each class's images are put in one seeded random order and the first ``k``
    are kept, so budgets drawn with the same seed are nested: the 10 images per
    class of ``k=10`` are among the 100 of ``k=100``. The result keeps the
    original order of the images. Raises ParameterError naming a class with
    fewer than ``k`` images.
    """
    check_positive_int("k", k)
    counts = torch.bincount(data.labels, minlength=len(data.classes))
    short = [(c, int(n)) for c, n in zip(data.classes, counts, strict=True) if n < k]
    if short:
        shown = ", ".join(f"{c!r} has {n}" for c, n in short[:3])
        raise ParameterError(
            f"parameter k={k!r} is invalid: every class needs at least {k} images but {shown}; "
            f"choose k <= {int(counts.min())}"
        )
    g = torch.Generator().manual_seed(seed)
    picked = []
    for c in range(len(data.classes)):
        members = (data.labels == c).nonzero().flatten()
        picked.append(members[torch.randperm(len(members), generator=g)[:k]])
    out = data.subset(torch.cat(picked).sort().values)
    out.source = f"{data.source}; {k} per class (seed {seed})"
    return out


def resize_images(data: ImageData, size: int, *, channels: int = 3) -> ImageData:
    """``data`` with ``channels`` channels (grayscale repeated) and ``size`` x ``size`` pixels.

    Images are resized with bilinear interpolation (antialiased when shrinking)
    and stay uint8; a dataset already in that shape is returned unchanged.
    """
    check_positive_int("size", size)
    images = data.images
    c = images.shape[1]
    if c != channels:
        if c != 1:
            raise ValueError(f"cannot turn {c}-channel images into {channels} channels")
        images = images.expand(-1, channels, -1, -1)
    if tuple(images.shape[2:]) != (size, size):
        parts = []
        for start in range(0, len(images), 1000):
            x = images[start : start + 1000].float()
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=size < max(images.shape[2:]))
            parts.append(x.round().clamp(0, 255).to(torch.uint8))
        images = torch.cat(parts) if parts else images
    if images is data.images:
        return data
    return ImageData(images.contiguous(), data.labels, list(data.classes),
                     f"{data.source}; {channels}x{size}x{size}")


def load_target(
    name: str,
    *,
    folder: str | Path | None = None,
    size: int = 32,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[ImageData, ImageData]:
    """The (train, test) splits of a target dataset, RGB at ``size`` x ``size`` pixels.

    ``name`` is one of :data:`TARGETS`: ``"fashion_mnist"`` (grayscale 28x28,
    turned into 3 channels and resized), ``"cifar10"``, or ``"folder"``: an
    image folder (one subfolder per class, see
    :func:`resnet_nb.data.load_image_folder`), of which a seeded
    ``test_fraction`` is held out as the test split.
    """
    check_choice("target", name, TARGETS)
    check_positive_int("size", size)
    if name == "folder":
        if folder is None:
            raise ParameterError(
                "parameter folder=None is invalid: target 'folder' needs the path of a folder "
                "with one subfolder of images per class"
            )
        data = load_image_folder(folder, size=size)
        if not 0 < test_fraction < 1:
            raise ParameterError(
                f"parameter test_fraction={test_fraction!r} is invalid: it must be in (0, 1)"
            )
        n_test = max(1, round(len(data) * test_fraction))
        if n_test >= len(data):
            raise ValueError(f"{folder} holds {len(data)} image(s): too few to hold out a test split")
        train, test = train_val_split(data, val_size=n_test, seed=seed)
    else:
        loader = load_fashion_mnist if name == "fashion_mnist" else load_cifar10
        train, test = loader("train"), loader("test")
    return resize_images(train, size), resize_images(test, size)


# ----------------------------------------------------------------------------
# transfer runs
# ----------------------------------------------------------------------------


@dataclass
class TransferResult:
    """One transfer run: the strategy, its label budget, the measured accuracy, the model.

    ``model`` expects RGB images of ``image_size`` pixels normalised with
    ``mean``/``std`` (see :func:`resnet_nb.predict`); ``test_acc`` is a fraction.
    """

    strategy: str
    labels_per_class: int | None
    train_images: int
    epochs: int
    test_acc: float
    test_loss: float
    trainable_params: int
    wall_time_s: float
    model: nn.Module
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int
    classes: list[str]
    notes: list[str] = field(default_factory=list)


def transfer(
    source: Source,
    strategy: str,
    train: ImageData,
    test: ImageData,
    *,
    labels_per_class: int | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 0.05,
    lr_decay: float = 0.5,
    weight_decay: float = 5e-4,
    precision: str = "auto",
    device: str = "auto",
    seed: int = 0,
    freeze_batchnorm: bool = True,
    progress: bool = False,
) -> TransferResult:
    """Train ``strategy`` from ``source`` on ``train`` and measure it once on ``test``.

    ``train`` and ``test`` must already be RGB at ``source.image_size`` pixels
    (:func:`load_target` / :func:`resize_images`). With ``labels_per_class``,
    :func:`sample_per_class` draws the label budget from ``train`` with ``seed``.
    ``source`` is left untouched: the run trains a copy with a new head for
    ``train.classes`` (``scratch`` trains a fresh network of the same
    architecture instead). It is one :func:`resnet_nb.train.fit`: ``lr`` is the
    peak rate of the engine's one-cycle schedule (of the head, for
    ``discriminative``, whose deeper groups train at ``lr_decay`` times the
    rate of the group above); ``gradual`` unfreezes a group more at the start
    of each stage (:class:`GradualUnfreezing`) under the same optimiser and
    schedule. Inputs are normalised with the source's statistics (the target's
    own for ``scratch``); random crops pad by 1/8 of the image size. The batch
    is cut to the training set when it is smaller. ``freeze_batchnorm=False``
    shows the BatchNorm pitfall of a frozen backbone (see :func:`freeze`).
    """
    from resnet_nb.models import build_model, count_parameters
    from resnet_nb.train import TrainConfig, fit

    check_choice("strategy", strategy, STRATEGIES)
    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    check_positive_float("lr", lr)
    _check_target(source, train, test)
    if labels_per_class is not None:
        train = sample_per_class(train, labels_per_class, seed=seed)
    started = time.perf_counter()
    notes: list[str] = []
    if strategy == "scratch":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(source.architecture, num_classes=len(train.classes),
                                stem=source.stem)
        mean, std = channel_stats(train)
    else:
        model = copy.deepcopy(source.model).cpu()
        replace_head(model, len(train.classes), seed=seed)
        notes.append(f"new head: {model.fc.in_features} features -> {len(train.classes)} classes")
        mean, std = source.mean, source.std
    apply_strategy(model, strategy, freeze_batchnorm=freeze_batchnorm)
    if batch_size > len(train):
        notes.append(f"batch {batch_size} cut to the {len(train)} training images")
    config = TrainConfig(
        model=source.architecture, epochs=epochs, batch_size=min(batch_size, len(train)),
        lr=lr, weight_decay=weight_decay, precision=precision, device=device, seed=seed,
        mean=tuple(mean), std=tuple(std), padding=max(1, source.image_size // 8),
    )
    groups = discriminative_param_groups(
        model, lr_decay=lr_decay if strategy == "discriminative" else 1.0,
        weight_decay=weight_decay,
    )
    callbacks = [GradualUnfreezing(epochs)] if strategy == "gradual" else []
    result = fit(config, model=model, train=train, val=None, test=test, param_groups=groups,
                 callbacks=callbacks, progress=progress)
    assert result.test is not None
    model = model.cpu().to(memory_format=torch.contiguous_format).eval()
    return TransferResult(
        strategy=strategy, labels_per_class=labels_per_class, train_images=len(train),
        epochs=epochs, test_acc=float(result.test["acc"]), test_loss=float(result.test["loss"]),
        trainable_params=count_parameters(model, trainable_only=True),
        wall_time_s=time.perf_counter() - started, model=model, mean=tuple(mean),
        std=tuple(std), image_size=source.image_size, classes=list(train.classes), notes=notes,
    )


def _check_target(source: Source, train: ImageData, test: ImageData) -> None:
    expected = (3, source.image_size, source.image_size)
    for split_name, split in (("train", train), ("test", test)):
        if tuple(split.images.shape[1:]) != expected:
            raise ParameterError(
                f"{split_name} images are {tuple(split.images.shape[1:])} but the source "
                f"expects {expected}: prepare them with resize_images(data, "
                f"{source.image_size})"
            )
    if train.classes != test.classes:
        raise ParameterError("train and test name different classes: give splits of one dataset")


class GradualUnfreezing(Callback):
    """Unfreeze the model a layer group at a time, from the head towards the input.

    At the start of each epoch, the groups of the current stage of
    :func:`unfreezing_stages` (for ``epochs`` epochs) become trainable. The
    optimiser already holds every parameter (see
    :func:`discriminative_param_groups`), so momentum and the learning-rate
    schedule carry on across stages.
    """

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.stage = -1

    def on_epoch_start(self, run: Run) -> None:
        stages = unfreezing_stages(run.model, self.epochs)
        ends = [sum(n for n, _ in stages[: i + 1]) for i in range(len(stages))]
        stage = next(i for i, end in enumerate(ends) if run.state.epoch < end)
        if stage != self.stage:
            unfreeze(run.model, _group_modules(run.model, stages[stage][1]))
            self.stage = stage
