# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -ExecuteTime,-execution,-collapsed,-scrolled
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# (chapter-finetuning)=
# # Fine-tuning a ResNet
#
# Most people who use a ResNet do not train it from scratch: they take a
# network trained on one task and move it to their own images. In this chapter
# you take a pretrained ResNet - by default one trained on CIFAR-10
# {cite}`krizhevsky2009learning` by this book's training engine, or
# torchvision's ImageNet weights if you are online - and move it to
# Fashion-MNIST {cite}`xiao2017fashion` with only a few labelled images per class.
# Why this can work at all: features a network learns on one task transfer
# to another, the more so the lower the layer and the closer the two tasks
# {cite}`yosinski2014transferable`.
#
# You will
#
# * load pretrained weights and see the architecture checks at work;
# * freeze a backbone properly, and see what goes wrong with BatchNorm when
#   you do not {cite}`ioffe2015batch`;
# * compare five strategies - from scratch, linear probe, full fine-tuning,
#   discriminative learning rates and gradual unfreezing - across label
#   budgets, each one run of the book's training engine, live with one seed
#   and in a recorded sweep over several seeds that shows which differences
#   are real;
# * use the result: top-k predictions on real images, export to TorchScript
#   and ONNX with a parity check, and Grad-CAM maps {cite}`selvaraju2017gradcam`
#   of what the model looks at.

# %% [markdown]
# The first cell installs the book's package, `resnet_nb`, when it is
# missing (on Colab, say); in a checkout of the book it does nothing.

# %%
# Install resnet_nb if it is missing: pip, from the book's repository at the
# tag of this version. RESNET_NB_INSTALL_FROM overrides what pip installs
# (a local folder, say), passed to pip as it is.
import importlib
import importlib.util
import os
import shlex
import subprocess
import sys

REPOSITORY = "https://github.com/resnet-nb/resnet-nb"  # as in _config.yml
VERSION = "0.1.0"  # the book's version, tag v0.1.0
if importlib.util.find_spec("resnet_nb") is None:
    source = os.environ.get(
        "RESNET_NB_INSTALL_FROM", f"git+{REPOSITORY}@v{VERSION}"
    )
    print(f"resnet_nb is missing: pip install {source}")
    pip = [sys.executable, "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, *shlex.split(source)], check=True)
    importlib.invalidate_caches()
else:
    print("resnet_nb is installed: nothing to install")

# %%
import time

started = time.perf_counter()

import copy
import math
import tempfile
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from PIL import Image

import resnet_nb
from resnet_nb import finetune as ft
from resnet_nb.data import cache_dir, load_cifar10, train_val_split
from resnet_nb.inference import export_parity, grad_cam, preprocess
from resnet_nb.models import build_model, count_parameters
from resnet_nb.params import ParameterError, check_choice, check_positive_int
from resnet_nb.report import (
    device_name,
    display_path,
    portable_text,
    provenance,
)
from resnet_nb.runs import REFERENCE_RUNS, check_run_name, load_reference
from resnet_nb.sweep import (
    clear_leads,
    epochs_for_budget,
    leaders,
    load_sweep,
    summarise,
)
from resnet_nb.train import (
    TrainConfig,
    evaluate,
    fit,
    limit_train,
    resolve_device,
)
from resnet_nb.viz import budget_chart, use_book_style

use_book_style()  # readable fonts; figures as SVG

# %% tags=["parameters"]
# "recorded" (the book's recorded network), "checkpoint" (a run of our
# engine) or "imagenet" (torchvision's weights)
source = "recorded"
reference_run = "cpu-resnet20-strong"  # source="recorded": its name
# source="checkpoint": written by `python -m resnet_nb.train --profile quick`
checkpoint = "../runs/quick/checkpoint.pt"
# CIFAR-10 images and epochs of the source run trained here when
# `checkpoint` is missing
source_images = 10000
source_epochs = 3
imagenet_arch = "resnet18"  # "resnet18" or "resnet50" (source="imagenet")
# local .pth of the ImageNet weights; None: torch's cache or a download
imagenet_weights = None
imagenet_size = 224  # input side for ImageNet weights (trained at 224)
target = "fashion_mnist"  # "fashion_mnist", "cifar10" or "folder"
# target="folder": a folder with one subfolder of images per class
target_folder = None
# labelled images per class (full profile: [10, 100, 1000, 5000])
budgets = [10, 100, 500]
# images each run trains on: epochs = max(1, train_images // labelled)
train_images = 3000
test_images = 2000  # test images per evaluation (None: the whole split)
# peak learning rate of each strategy (of the head, for discriminative)
lrs = {
    "scratch": 0.1,
    "linear_probe": 0.5,
    "full": 0.05,
    "discriminative": 0.1,
    "gradual": 0.05,
}
lr_decay = 0.5  # discriminative: rate factor per stage, head to input
batch_size = 32  # batch size of every transfer run
precision = "auto"  # "auto" (bf16 where it is fast), "bf16", "fp16", "fp32"
device = "auto"  # "auto", "cpu", "cuda", "cuda:N" or "mps"
seed = 0  # seeds label budgets, heads, data order and augmentation
# the recorded sweep of every strategy at every budget over several seeds
recorded_sweep = "cpu-finetune-sweep"

# %%
check_choice("source", source, ("recorded", "checkpoint", "imagenet"))
if source == "recorded":
    check_run_name("reference_run", reference_run, kind="training")
check_run_name("recorded_sweep", recorded_sweep, kind="sweep")
if not isinstance(checkpoint, str) or not checkpoint:
    raise ParameterError(
        f"parameter checkpoint={checkpoint!r} is invalid: give a file path"
    )
check_positive_int("source_images", source_images)
check_positive_int("source_epochs", source_epochs)
check_choice("imagenet_arch", imagenet_arch, ft.IMAGENET_ARCHITECTURES)
if imagenet_weights is not None and not isinstance(imagenet_weights, str):
    raise ParameterError(
        f"parameter imagenet_weights={imagenet_weights!r} is invalid: "
        "give a .pth path or None"
    )
check_positive_int("imagenet_size", imagenet_size)
check_choice("target", target, ft.TARGETS)
if target == "folder" and not isinstance(target_folder, str):
    raise ParameterError(
        f"parameter target_folder={target_folder!r} is invalid: "
        "target='folder' needs the path of a folder with one subfolder of "
        "images per class"
    )
if not isinstance(budgets, list) or not budgets:
    raise ParameterError(
        f"parameter budgets={budgets!r} is invalid: give a list, "
        "e.g. [10, 100]"
    )
for k in budgets:
    check_positive_int("budgets", k)
check_positive_int("train_images", train_images)
if test_images is not None:
    check_positive_int("test_images", test_images)
if not isinstance(lrs, dict) or sorted(lrs) != sorted(ft.STRATEGIES):
    raise ParameterError(
        f"parameter lrs={lrs!r} is invalid: give one peak rate for each "
        f"of {ft.STRATEGIES}"
    )
for name, value in lrs.items():
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not value > 0):
        raise ParameterError(
            f"parameter lrs[{name!r}]={value!r} is invalid: use a number > 0"
        )
if (isinstance(lr_decay, bool) or not isinstance(lr_decay, (int, float))
        or not 0 < lr_decay <= 1):
    raise ParameterError(
        f"parameter lr_decay={lr_decay!r} is invalid: it must be in (0, 1]"
    )
check_positive_int("batch_size", batch_size)
TrainConfig(precision=precision, device=device, seed=seed).validate()
dev = resolve_device(device)
print(f"device: {device_name(dev)}")

# %% [markdown]
# ## The pretrained source
#
# The default source is the book's recorded ResNet-20: a run of the training
# engine on all 45,000 CIFAR-10 training images, kept in the repository with
# its weights, history and provenance (see {ref}`reference-runs`).
# `load_reference` rebuilds the network named in the run's recorded
# configuration, checks the weights file's sha256 and loads it with
# `weights_only=True`. It also returns the normalisation statistics of the
# source's training data: the weights expect their inputs prepared that way.
# With `source="checkpoint"` the source is a run folder of your own
# (`python -m resnet_nb.train --profile quick` writes
# `runs/quick/checkpoint.pt`; if there is none, the chapter trains a small
# one itself and keeps it in the cache folder for the next run).

# %%
if source == "imagenet":
    src = ft.load_imagenet_source(
        imagenet_arch, path=imagenet_weights, image_size=imagenet_size
    )
    source_origin = "given"
elif source == "recorded":
    src = load_reference(reference_run)
    source_origin = "recorded"
else:
    ckpt = Path(checkpoint)
    source_origin = "given" if ckpt.is_file() else "cached"
    if source_origin == "cached":
        ckpt = (cache_dir() / "finetune"
                / f"resnet20-cifar10-{source_images}x{source_epochs}"
                  f"-seed{seed}" / "checkpoint.pt")
        if ckpt.is_file():
            print(f"no checkpoint at {checkpoint}; using the source run "
                  f"cached at {display_path(ckpt)}")
        else:
            source_origin = "trained"
            print(f"no checkpoint at {checkpoint}; training a small source "
                  f"run instead: ResNet-20, {source_images:,} CIFAR-10 "
                  f"images, {source_epochs} epochs -> "
                  f"{display_path(ckpt.parent)}")
            cifar = load_cifar10("train")
            cifar_train, _ = train_val_split(cifar, val_size=5000, seed=0)
            cifar_train = limit_train(cifar_train, source_images, seed=seed)
            run = fit(
                TrainConfig(model="resnet20", epochs=source_epochs, lr=0.2,
                            label_smoothing=0.1, precision=precision,
                            device=device, seed=seed, out=str(ckpt.parent)),
                train=cifar_train, val=None, test=None, progress=False,
            )
            print(f"trained in {run.wall_time_s:.0f} s")
    src = ft.load_checkpoint_source(ckpt)
print(portable_text(src.description))
mean = tuple(round(m, 3) for m in src.mean)
std = tuple(round(s, 3) for s in src.std)
print(f"inputs: RGB {src.image_size}x{src.image_size}, mean {mean}, "
      f"std {std}")

# %% [markdown]
# Loading checks the architecture. Weights of another network - here the
# source's loaded into a ResNet-32 - fail with the keys that do not match; a
# model with another number of classes gets the body of the network and keeps
# its own new head, and a note says so.

# %%
other = build_model(
    "resnet32" if src.architecture != "resnet32" else "resnet20"
)
weights = src.model.state_dict()
try:
    ft.load_weights(other, weights, source="the source weights")
except ft.ArchitectureMismatchError as err:
    print(f"ArchitectureMismatchError: {err}"[:400])
five = build_model(src.architecture, num_classes=5)
for note in ft.load_weights(five, weights, source="the source weights"):
    print(note)

# %% [markdown]
# ## The target data and the label budgets
#
# Fashion-MNIST images are grayscale 28x28; the source expects RGB at its own
# size, so each image is repeated over three channels and resized
# (`load_target`). A label budget of $k$ keeps $k$ images per class, drawn with
# the seed; budgets are nested, so the 10 images per class of the smallest
# budget are among those of the larger ones. Every run is measured on the same
# seeded subset of the test split.

# %%
target_train, target_test = ft.load_target(
    target, folder=target_folder, size=src.image_size, seed=seed
)
target_test = limit_train(target_test, test_images, seed=seed)
classes = target_train.classes
print(portable_text(repr(target_train)))
print(f"test: {len(target_test):,} images")
largest = max(budgets)
counts = torch.bincount(target_train.labels, minlength=len(classes))
if largest > int(counts.min()):
    raise ParameterError(
        f"parameter budgets={budgets!r} is invalid: the smallest class of "
        f"{target} has {int(counts.min())} training images"
    )
epochs_for = {
    k: epochs_for_budget(train_images, k, len(classes)) for k in budgets
}
display(Markdown(
    "| labels per class | labelled images | epochs |\n|---:|---:|---:|\n"
    + "\n".join(f"| {k} | {k * len(classes):,} | {epochs_for[k]} |"
                for k in budgets)
))

# %% [markdown]
# ## Freezing, and the BatchNorm pitfall
#
# A linear probe trains only the new classifier on top of the pretrained
# features. Setting `requires_grad=False` on the backbone stops its weights,
# but not its BatchNorm layers: in `model.train()` mode they normalise with the
# statistics of each batch and move their running statistics towards the new
# data. The "frozen" backbone then changes under you.
# `ft.freeze` also replaces each BatchNorm by a `FrozenBatchNorm2d`, which
# stays in eval mode whatever `model.train()` says.
#
# What each strategy trains at its start:

# %%
# NBVAL_CHECK_OUTPUT
rows = []
for strategy in ft.STRATEGIES:
    m = copy.deepcopy(src.model)
    ft.replace_head(m, len(classes), seed=seed)
    ft.apply_strategy(m, strategy)
    m.train()
    frozen_bn = sum(isinstance(x, ft.FrozenBatchNorm2d) for x in m.modules())
    bn_training = sum(isinstance(x, torch.nn.BatchNorm2d) and x.training
                      for x in m.modules())
    rows.append(f"| {strategy} | {count_parameters(m, trainable_only=True):,}"
                f" | {count_parameters(m):,} | {frozen_bn} | {bn_training} |")
display(Markdown(
    "| strategy | trainable parameters | all parameters | frozen BN "
    "| BN in train mode after `model.train()` |\n|---|---:|---:|---:|---:|\n"
    + "\n".join(rows)
))

# %% [markdown]
# Now the pitfall with numbers: two linear probes at the middle budget, one
# with `requires_grad=False` only, one with the BatchNorms frozen too. After
# training we compare each backbone's BatchNorm running statistics with the
# pretrained ones, channel by channel: how far the running **means** moved,
# in units of the pretrained running standard deviation, and by how much the
# running **variances** changed, as a fraction of the pretrained variance.
# For our CIFAR-10 source we also ask how well the backbone, with its
# original head, still does on the source task.

# %%
k_mid = sorted(budgets)[len(budgets) // 2]
common = dict(labels_per_class=k_mid, epochs=epochs_for[k_mid],
              batch_size=batch_size, precision=precision, device=device,
              seed=seed, lr=lrs["linear_probe"])
naive = ft.transfer(src, "linear_probe", target_train, target_test,
                    freeze_batchnorm=False, **common)
proper = ft.transfer(src, "linear_probe", target_train, target_test,
                     **common)


def bn_drift(model: torch.nn.Module) -> tuple[float, float]:
    """How far ``model``'s BatchNorm statistics moved from the source's.

    Over every BatchNorm channel of the backbone: the mean of
    |running-mean change| / pretrained running std, and the mean of
    |running-variance change| / pretrained running variance.
    """
    before = dict(src.model.named_buffers())
    after = dict(model.named_buffers())
    mean_shift, var_change = [], []
    for name, mean0 in before.items():
        if not name.endswith("running_mean") or name.startswith("fc"):
            continue
        var_name = name.replace("running_mean", "running_var")
        var0 = before[var_name]
        mean_shift.append((after[name] - mean0).abs() / var0.sqrt())
        var_change.append((after[var_name] - var0).abs() / var0)
    return (float(torch.cat(mean_shift).mean()),
            float(torch.cat(var_change).mean()))


def source_task_acc(model: torch.nn.Module) -> float | None:
    """Accuracy of the backbone with the source head on CIFAR-10 test."""
    if source == "imagenet":
        return None
    m = copy.deepcopy(model)
    m.fc = copy.deepcopy(src.model.fc)
    cifar_test = limit_train(load_cifar10("test"), 1000, seed=seed)
    return evaluate(m, cifar_test, mean=src.mean, std=src.std,
                    precision=precision)["acc"]


before_acc = source_task_acc(src.model)
pitfall = {}
for name, r in (("requires_grad=False only", naive),
                ("FrozenBatchNorm2d", proper)):
    pitfall[name] = (r, *bn_drift(r.model), source_task_acc(r.model))
    _, shift, change, _ = pitfall[name]
    print(f"{name:>24}: running means moved {shift:.3f} std, "
          f"running variances changed {change:.1%}")


def fmt(a: float | None) -> str:
    return "n/a" if a is None else f"{a:.1%}"


display(Markdown(
    f"| linear probe, {k_mid} labels per class | running-mean shift (std) "
    f"| running-variance change | source task (pretrained: "
    f"{fmt(before_acc)}) | target test accuracy |\n"
    "|---|---:|---:|---:|---:|\n"
    + "\n".join(f"| {name} | {shift:.3f} | {change:.1%} | {fmt(acc)} "
                f"| {r.test_acc:.1%} |"
                for name, (r, shift, change, acc) in pitfall.items())
))

# %%
_, naive_shift, naive_var, naive_src = pitfall["requires_grad=False only"]
_, proper_shift, proper_var, proper_src = pitfall["FrozenBatchNorm2d"]
text = (
    f"With `requires_grad=False` alone the running means moved by "
    f"{naive_shift:.3f} standard deviations on average and the running "
    f"variances changed by {naive_var:.1%} of their pretrained value; with "
    f"`FrozenBatchNorm2d` the means moved by {proper_shift:.3f} and the "
    f"variances by {proper_var:.1%}. "
)
if before_acc is not None:
    naive_lost = abs(naive_src - before_acc)
    proper_lost = abs(proper_src - before_acc)
    text += (
        f"On its own CIFAR-10 test images the pretrained network scores "
        f"{before_acc:.1%}; the backbone after the naive probe scores "
        f"{naive_src:.1%} ({(naive_src - before_acc) * 100:+.1f} points), "
        f"after the proper one {proper_src:.1%} "
        f"({(proper_src - before_acc) * 100:+.1f}): the naive probe "
        + ("changed what the supposedly frozen network computes. "
           if naive_lost > proper_lost else
           "left the source task no worse off here, but its backbone "
           "still moved. ")
    )
diff = naive.test_acc - proper.test_acc
text += (
    f"On the target, the naive probe reaches {naive.test_acc:.1%} and the "
    f"proper one {proper.test_acc:.1%} (one seed each): "
    + ("letting the statistics adapt helped here, but then the backbone is "
       "no longer the pretrained one, and the head was trained on features "
       "that kept changing."
       if diff > 0 else
       "the drifting statistics did not buy accuracy on the target.")
)
display(Markdown(text))

# %% [markdown]
# ## Discriminative rates and gradual unfreezing
#
# Early layers hold generic features (edges, colours) and late layers
# task-specific ones {cite}`yosinski2014transferable`, so fine-tuning can
# change the early layers less. Discriminative learning rates give each stage
# its own rate, decaying by `lr_decay` per stage from the head to the input.
# In the library they are optimizer parameter groups that carry an
# `lr_scale`: the training engine sets each group's rate to the schedule's
# rate times its scale, so the whole run is one `fit` with one one-cycle
# schedule. Each stage is split into weights (with weight decay) and
# BatchNorm scales and biases (without):

# %%
# NBVAL_CHECK_OUTPUT
m = copy.deepcopy(src.model)
ft.replace_head(m, len(classes), seed=seed)
groups = ft.discriminative_param_groups(m, lr_decay=lr_decay)
peak = lrs["discriminative"]
display(Markdown(
    "| group | parameters | weight decay | `lr_scale` | peak learning rate |"
    "\n|---|---:|---:|---:|---:|\n"
    + "\n".join(f"| {g['name']} | {sum(p.numel() for p in g['params']):,} "
                f"| {g['weight_decay']:g} | {g['lr_scale']:g} "
                f"| {peak * g['lr_scale']:.5f} |" for g in groups)
))

# %% [markdown]
# Gradual unfreezing trains the head first and then unfreezes one more stage
# at a time, towards the input. It too is one `fit`: the optimizer holds
# every parameter from the start, frozen ones included (SGD skips a
# parameter while it has no gradient), and the callback
# `ft.GradualUnfreezing(epochs)` unfreezes the next stage at the start of
# the epoch where it begins, so momentum and the learning-rate schedule
# carry on across stages. Here is what the callback does over the smallest
# budget's epochs, called on a stand-in for the engine's run (no training):

# %%
# NBVAL_CHECK_OUTPUT
n_epochs = epochs_for[min(budgets)]
m = copy.deepcopy(src.model)
ft.replace_head(m, len(classes), seed=seed)
ft.apply_strategy(m, "gradual")
groups = ft.discriminative_param_groups(m, lr_decay=1.0)
callback = ft.GradualUnfreezing(n_epochs)
run = SimpleNamespace(model=m, state=SimpleNamespace(epoch=0))
rows, first = [], 0
for (length, names) in ft.unfreezing_stages(m, n_epochs):
    run.state.epoch = first
    callback.on_epoch_start(run)
    in_optimizer = sum(p.numel() for g in groups for p in g["params"])
    rows.append(f"| {first + 1}-{first + length} | {', '.join(names)} "
                f"| {count_parameters(m, trainable_only=True):,} "
                f"| {in_optimizer:,} |")
    first += length
display(Markdown(
    "| epochs | trainable groups | trainable parameters "
    "| parameters in the optimizer |\n|---|---|---:|---:|\n"
    + "\n".join(rows)
))

# %% [markdown]
# ## Every strategy at every budget
#
# Each run is one call of `ft.transfer`, which is one call of the training
# engine's `fit`: it starts from the same source (or, for `scratch`, from a
# fresh network of the same architecture), trains on the same labelled
# images with the engine's augmentation (random crops padded by an eighth of
# the image side, flips) and one-cycle schedule, normalises inputs with the
# source's statistics (the target's own for `scratch`), and is measured once
# on the same test images. All runs use one seed.

# %%
results = []
for k in budgets:
    for strategy in ft.STRATEGIES:
        r = ft.transfer(src, strategy, target_train, target_test,
                        labels_per_class=k, epochs=epochs_for[k],
                        batch_size=batch_size, lr=lrs[strategy],
                        lr_decay=lr_decay, precision=precision,
                        device=device, seed=seed)
        results.append(r)
        print(f"{strategy:>14}  k={k:<5} test acc {r.test_acc:.1%}  "
              f"({r.wall_time_s:.0f} s)")

# %%
acc = {(r.strategy, r.labels_per_class): r.test_acc for r in results}
header = ("| strategy | "
          + " | ".join(f"{k} per class" for k in budgets) + " |")
display(Markdown(
    header + "\n|---|" + "---:|" * len(budgets) + "\n"
    + "\n".join(f"| {s} | "
                + " | ".join(f"{acc[s, k]:.1%}" for k in budgets) + " |"
                for s in ft.STRATEGIES)
))

# %% mystnb={"figure": {"caption": "Test accuracy on the target against the number of labelled images per class, for every strategy (same source, same images, same test set, one seed).", "name": "fig-budgets"}, "image": {"alt": "A line chart with a logarithmic x axis of labelled images per class and test accuracy in percent on the y axis: one line with markers for each of the five strategies (scratch, linear probe, full, discriminative, gradual), one point per label budget."}}
budget_chart(budgets, {s: [acc[s, k] for k in budgets] for s in ft.STRATEGIES},
             title=f"{target}: from {src.architecture} ({source})")
plt.show()

# %% [markdown]
# How much of these differences is the strategy, and how much the seed? The
# test set alone makes each accuracy uncertain: on $n$ test images an
# accuracy $p$ has a standard error of $\sqrt{p(1-p)/n}$. A different seed
# also draws other labelled images, another head and another batch order,
# which moves results further, most at the smallest budgets. One seed cannot
# measure that spread, so this live run names no best strategy; the recorded
# sweep in the next section does, where the seeds allow.

# %%
n_test = len(target_test)
lines = []
for k in budgets:
    ranked = sorted(ft.STRATEGIES, key=lambda s: acc[s, k], reverse=True)
    top, second = ranked[0], ranked[1]
    se = 100 * math.sqrt(sum(acc[s, k] * (1 - acc[s, k])
                             for s in (top, second)) / n_test)
    lines.append(
        f"At {k} labels per class {top} ({acc[top, k]:.1%}) is ahead of "
        f"{second} ({acc[second, k]:.1%}) by "
        f"{(acc[top, k] - acc[second, k]) * 100:.1f} points, with a "
        f"test-set standard error of the difference of {se:.1f}.")
for k in (min(budgets), max(budgets)):
    pretrained = [s for s in ft.STRATEGIES if s != "scratch"]
    top = max(pretrained, key=lambda s: acc[s, k])
    gap = acc[top, k] - acc["scratch", k]
    lines.append(
        f"At {k} per class the highest pretrained start in this run ({top}, "
        f"{acc[top, k]:.1%}) is {abs(gap) * 100:.1f} points "
        f"{'above' if gap >= 0 else 'below'} training from scratch "
        f"({acc['scratch', k]:.1%}).")
lo, hi = min(budgets), max(budgets)
probe_gain = acc["linear_probe", hi] - acc["linear_probe", lo]
full_gain = acc["full", hi] - acc["full", lo]
lines.append(
    f"From {lo} to {hi} labels per class the linear probe changes by "
    f"{probe_gain * 100:+.1f} points and full fine-tuning by "
    f"{full_gain * 100:+.1f}. Every run trains on about {train_images:,} "
    "images, so a larger budget means more distinct images but fewer "
    "epochs over them.")
display(Markdown("{numref}`fig-budgets` plots the table. "
                 + " ".join(lines)))

# %% [markdown]
# ## Every strategy at every budget, over several seeds (recorded)
#
# The same grid, recorded with `python -m resnet_nb.sweep` (see
# {ref}`reference-runs`): every cell is one `ft.transfer` run as above, over
# several seeds, each measured on the whole test split. A seed draws the
# labelled images, the new head, the batch order and the augmentation; the
# test images are the same for every cell. The cell below prints how the
# sweep's settings differ from this chapter's live run.

# %%
sweep = load_sweep(REFERENCE_RUNS / recorded_sweep)
sw_info, sw_config = sweep["sweep"], sweep["sweep"]["config"]
summary = summarise(sweep["results"])
sw_budgets, sw_strategies = sw_config["budgets"], sw_config["strategies"]
n_seeds, sw_test = len(sw_config["seeds"]), sw_info["test_images"]
print(f"recorded sweep {recorded_sweep}: {len(sw_strategies)} strategies x "
      f"{len(sw_budgets)} budgets x {n_seeds} seeds = "
      f"{len(sweep['results'])} runs, {sw_test:,} test images, "
      f"on {sw_info['device_name']}")
print(f"source: {sw_info['source']}")
live = {"target": target, "budgets": budgets, "train_images": train_images,
        "test_images": test_images, "lrs": lrs, "lr_decay": lr_decay,
        "batch_size": batch_size,
        "reference_run": reference_run if source == "recorded" else None}
for key, value in live.items():
    if sw_config.get(key) != value:
        theirs, ours = ("all" if v is None and key == "test_images" else v
                        for v in (sw_config.get(key), value))
        print(f"  {key}: sweep {theirs}, this run {ours}")

# %%
display(Markdown(
    "| strategy | "
    + " | ".join(f"{k} per class" for k in sw_budgets) + " |\n|---|"
    + "---:|" * len(sw_budgets) + "\n"
    + "\n".join(
        f"| {s} | " + " | ".join(
            f"{summary[s, k]['mean']:.1%} ± {summary[s, k]['sd']:.1%}"
            for k in sw_budgets) + " |"
        for s in sw_strategies)
    + f"\n\nMean ± standard deviation over {n_seeds} seeds of the test "
      f"accuracy on {sw_test:,} images (recorded sweep {recorded_sweep})."
))

# %% mystnb={"figure": {"caption": "Test accuracy against labelled images per class from the recorded sweep cpu-finetune-sweep: the mean over seeds of every strategy, with bars of one standard deviation either side.", "name": "fig-budgets-recorded"}, "image": {"alt": "A line chart with a logarithmic x axis of labelled images per class and test accuracy in percent on the y axis: for each of the five strategies a line through the mean accuracy at each label budget, with error bars of one standard deviation over seeds."}}
budget_chart(
    sw_budgets,
    {s: [summary[s, k]["mean"] for k in sw_budgets] for s in sw_strategies},
    spread={s: [summary[s, k]["sd"] for k in sw_budgets]
            for s in sw_strategies},
    title=f"{sw_config['target']}: recorded sweep, {n_seeds} seeds")
plt.show()

# %% [markdown]
# A strategy is named best at a budget only where its interval, mean ± one
# standard deviation over seeds, lies wholly above the interval of every
# other strategy.

# %%
worst_se = max(v["test_se"] for v in summary.values())
sds = {key: v["sd"] for key, v in summary.items()}
widest = max(sds, key=sds.get)
sw_best, lines = {}, [
    f"With {sw_test:,} test images the standard error that the test set "
    f"puts on one accuracy is at most {worst_se * 100:.2f} points. The seed "
    f"moves results more: the standard deviations over seeds run from "
    f"{min(sds.values()) * 100:.1f} to {max(sds.values()) * 100:.1f} points, "
    f"the largest for {widest[0]} at {widest[1]} labels per class."]
def shown(s, k):
    return f"{s} ({summary[s, k]['mean']:.1%} ± {summary[s, k]['sd']:.1%})"


for k in sw_budgets:
    top, second, clear = clear_leads(summary, k)
    group = leaders(summary, k)
    below = [s for s in sw_strategies if s not in group]
    sw_best[k] = top if clear else None
    if clear:
        lines.append(f"At {k} labels per class {shown(top, k)} is best: its "
                     f"interval lies above every other, the runner-up being "
                     f"{shown(second, k)}.")
    else:
        lines.append(
            f"At {k} labels per class the intervals of "
            + ", ".join(shown(s, k) for s in group)
            + " overlap: the seeds cannot rank them"
            + (f", while {' and '.join(below)} lie wholly below."
               if below else "."))
sw_lo, sw_hi = min(sw_budgets), max(sw_budgets)
for k in (sw_lo, sw_hi):
    top = max((s for s in sw_strategies if s != "scratch"),
              key=lambda s: summary[s, k]["mean"])
    gap = summary[top, k]["mean"] - summary["scratch", k]["mean"]
    lines.append(
        f"At {k} per class the best pretrained start on average ({top}) is "
        f"{abs(gap) * 100:.1f} points {'above' if gap >= 0 else 'below'} "
        f"training from scratch.")
display(Markdown(" ".join(lines)))

# %% [markdown]
# ## Using the model: predictions
#
# `resnet_nb.predict` takes image files, PIL images or tensors, prepares them
# the way the model was trained (channels, size, normalisation) and returns the
# top-k classes with their probabilities. We take the best run at the largest
# budget, write a few test images to PNG files and ask for predictions from
# the files, from PIL images and from tensors - the three must agree.

# %%
chosen = max((r for r in results if r.labels_per_class == max(budgets)),
             key=lambda r: r.test_acc)
model = chosen.model.eval()
folder = Path(tempfile.mkdtemp(prefix="resnet_nb_predict_"))
raw_test = ft.load_target(target, folder=target_folder, size=src.image_size,
                          seed=seed)[1]
paths = []
for i in range(4):
    path = folder / f"test_{i}.png"
    Image.fromarray(raw_test.images[i].permute(1, 2, 0).numpy()).save(path)
    paths.append(path)
prep = dict(mean=chosen.mean, std=chosen.std, size=chosen.image_size)
from_files = resnet_nb.predict(model, paths, classes, k=3, **prep)
pil_images = [Image.open(p) for p in paths]
from_pil = resnet_nb.predict(model, pil_images, classes, k=3, **prep)
from_tensors = resnet_nb.predict(model, raw_test.images[:4], classes, k=3,
                                 **prep)
same = ([a[0][0] for a in from_files] == [b[0][0] for b in from_pil]
        == [c[0][0] for c in from_tensors])
print(f"model: {chosen.strategy}, {chosen.labels_per_class} labels per "
      f"class; files, PIL and tensors agree: {same}")
for path, label, top in zip(paths, raw_test.labels[:4], from_files,
                            strict=True):
    shown = ", ".join(f"{name} {p:.0%}" for name, p in top)
    print(f"{path.name}  true: {classes[int(label)]:<12} "
          f"predicted: {shown}")

# %% [markdown]
# ## Export: TorchScript and ONNX
#
# For deployment without this package, the model is traced to TorchScript and
# exported to ONNX. Both files are run on the same batch of test images (ONNX
# with onnxruntime) and compared with the eager PyTorch model.

# %%
x = preprocess(raw_test.images[:16], **prep)
parity = export_parity(model, x, folder / "export")
display(Markdown(
    f"Largest absolute difference of the logits from the eager model, on 16 "
    f"test images (largest logit {parity['max_abs_logit']:.2f}): "
    f"TorchScript {parity['torchscript']:.2e}, "
    f"ONNX Runtime {parity['onnx']:.2e}."))
assert parity["torchscript"] < 1e-4 and parity["onnx"] < 1e-3, parity

# %% [markdown]
# ## Grad-CAM, step by step
#
# Grad-CAM {cite}`selvaraju2017gradcam` asks which parts of the image the last
# stage's feature maps $A^c$ point to for class $y$: each channel is weighted by
# the gradient of the class score averaged over space,
# $\alpha_c = \frac{1}{HW}\sum_{i,j} \partial y / \partial A^c_{ij}$, and the map is
# $\mathrm{ReLU}(\sum_c \alpha_c A^c)$, upsampled to the image. Two hooks catch
# what we need: a forward hook stores the stage's output and registers a
# tensor hook on it, which stores the gradient during the backward pass.

# %%
layer = model.layer4 if hasattr(model, "layer4") else model.layer3
store = {}


def forward_hook(module, inputs, output):
    store["A"] = output
    output.register_hook(lambda grad: store.__setitem__("dA", grad))


handle = layer.register_forward_hook(forward_hook)
x_all = preprocess(raw_test.images[:200], **prep).requires_grad_(True)
logits = model(x_all)
predicted = logits.argmax(1)
logits.gather(1, predicted[:, None]).sum().backward()
handle.remove()
alpha = store["dA"].mean(dim=(2, 3), keepdim=True)
cam = F.relu((alpha * store["A"]).sum(dim=1, keepdim=True)).detach()
cam = F.interpolate(cam, size=x_all.shape[-2:], mode="bilinear",
                    align_corners=False)[:, 0]
cam = cam / cam.flatten(1).max(1).values.clamp_min(1e-12)[:, None, None]
package_cam = grad_cam(model, x_all.detach(), layer=layer)
print(f"step by step vs resnet_nb.inference.grad_cam: largest difference "
      f"{float((cam - package_cam).abs().max()):.1e}")

# %% mystnb={"figure": {"caption": "Grad-CAM of the fine-tuned model for test images it classifies correctly (top) and wrongly (bottom): bright regions raised the predicted class's score.", "name": "fig-gradcam"}, "image": {"alt": "Two rows of four small Fashion-MNIST test images, each overlaid with a Grad-CAM heat map in blue to red. Each image is titled with the predicted class and, in brackets, the true class; the top row holds correct predictions, the bottom row mistakes with red titles."}}
truth = raw_test.labels[:200]
right = (predicted == truth).nonzero().flatten()[:4].tolist()
wrong = (predicted != truth).nonzero().flatten()[:4].tolist()
fig, axes = plt.subplots(2, 4, figsize=(7.5, 5.2))
for row, picks in enumerate((right, wrong)):
    for col in range(4):
        ax = axes[row, col]
        ax.axis("off")
        if col >= len(picks):
            continue
        i = picks[col]
        ax.imshow(raw_test.images[i].permute(1, 2, 0).numpy())
        ax.imshow(package_cam[i].numpy(), cmap="jet", alpha=0.45)
        ax.set_title(f"{classes[int(predicted[i])]}\n"
                     f"(true: {classes[int(truth[i])]})",
                     fontsize=10,
                     color="black" if row == 0 else "firebrick")
fig.tight_layout()
plt.show()

# %%
side = store["A"].shape[-1]
display(Markdown(
    f"Of the first 200 test images the model classifies "
    f"{int((predicted == truth).sum())} correctly; {{numref}}`fig-gradcam` "
    f"shows {len(right)} of them and {len(wrong)} of its mistakes. Read the "
    f"maps with care at this resolution: the last stage's maps are "
    f"{side}x{side} pixels, so each bright cell covers a "
    f"{src.image_size // side}-pixel square of the image."))

# %% [markdown]
# ## Summary

# %%
k_lo, k_hi = min(budgets), max(budgets)
origin = {
    "given": ".",
    "recorded": " (a recorded run; see the reference runs).",
    "trained": " (trained in this run, as no checkpoint was found).",
    "cached": " (no checkpoint was found; an earlier run of this chapter "
              "trained it and kept it in the cache).",
}[source_origin]
named = [f"{sw_best[k]} at {k} labels per class" for k in sw_budgets
         if sw_best[k]]
def listed(names):
    quoted = [f"`{n}`" for n in names]
    return (", ".join(quoted[:-1]) + " and " + quoted[-1]
            if len(quoted) > 1 else "".join(quoted))


groups = {k: leaders(summary, k) for k in sw_budgets}
always = [s for s in sw_strategies if all(s in groups[k] for k in sw_budgets)]
never = [s for s in sw_strategies
         if not any(s in groups[k] for k in sw_budgets)]
display(Markdown("\n".join([
    f"* The source was {portable_text(src.description)}{origin}",
    "* Loading checks the architecture: other networks' weights fail with "
    "the keys that do not match; another number of classes replaces the "
    "head and says so.",
    f"* Freezing BatchNorm matters: with `requires_grad=False` alone the "
    f"running means moved by {naive_shift:.3f} standard deviations and the "
    f"running variances by {naive_var:.1%}; with `FrozenBatchNorm2d` by "
    f"{proper_shift:.3f} and {proper_var:.1%}.",
    "* Discriminative rates are parameter groups with an `lr_scale`, "
    "gradual unfreezing a callback: every strategy is one run of the "
    "training engine.",
    f"* Live, one seed: from scratch reached {acc['scratch', k_lo]:.1%} at "
    f"{k_lo} and {acc['scratch', k_hi]:.1%} at {k_hi} labels per class, "
    f"the highest pretrained start "
    f"{max(acc[s, k_lo] for s in ft.STRATEGIES if s != 'scratch'):.1%} and "
    f"{max(acc[s, k_hi] for s in ft.STRATEGIES if s != 'scratch'):.1%}.",
    f"* Recorded, {n_seeds} seeds: "
    + ("best strategy " + "; ".join(named) + ". "
       if named else "no strategy's interval clears all others at any "
       "budget. ")
    + (f"{listed(always)} lead at every budget, within each other's "
       "intervals. " if len(always) > 1 else "")
    + (f"{listed(never)} lie below the leaders at every budget."
       if never else ""),
    f"* TorchScript and ONNX reproduce the eager logits to "
    f"{max(parity['torchscript'], parity['onnx']):.0e}.",
])))

# %% [markdown]
# These runs are short (around a hundred optimizer steps each) so that the
# chapter runs on a laptop CPU; the full profile trains longer, on more
# labels. How much a pretrained start helps depends on how good and how
# related the source is: a ResNet-20 trained on 45,000 small CIFAR-10 images
# carries far fewer and narrower features than ImageNet weights.
#
# ## Exercises
#
# 1. Run the chapter with `source="imagenet"` (online, or with a local copy of
#    the weights in `imagenet_weights`). Which strategies gain most?
# 2. Set `lr_decay=1.0`: discriminative rates become full fine-tuning at the
#    head's rate. Compare with `full` at the same rate.
# 3. Train the probe with `freeze_batchnorm=False` for more epochs and plot
#    the drift of the running means and variances against the epoch. Where
#    do they settle, and why there?
# 4. Put a few photos of your own in `my_images/<class>/` folders and run the
#    chapter with `target="folder"`, `target_folder="my_images"`.
# 5. Compute Grad-CAM at `layer2` instead of the last stage. What do you gain
#    in resolution, and what do the maps lose?
#
# ## Provenance

# %%
record = provenance(
    params={
        "source": source, "reference_run": reference_run,
        "checkpoint": checkpoint,
        "source_images": source_images, "source_epochs": source_epochs,
        "imagenet_arch": imagenet_arch, "imagenet_weights": imagenet_weights,
        "imagenet_size": imagenet_size, "target": target,
        "target_folder": target_folder, "budgets": budgets,
        "train_images": train_images, "test_images": test_images,
        "lrs": lrs, "lr_decay": lr_decay, "batch_size": batch_size,
        "precision": precision, "device": device, "seed": seed,
    },
    started=started,
    data_source=f"{src.description}; target: {target_train.source}",
    device=dev,
)
