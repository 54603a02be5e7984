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
# (chapter-going-deeper)=
# # Going deeper: the degradation problem
#
# A deeper network can represent everything a shallower one can: the extra
# layers only have to learn the identity. Yet {cite}`he2016deep` found that
# a 56-layer plain network trains *worse* than a 20-layer one on CIFAR-10 -
# higher error on the training set itself, so this is not overfitting. They
# called it the degradation problem, and residual connections were their
# answer.
#
# In this chapter you rerun that experiment: plain-20, plain-56, ResNet-20
# and ResNet-56, trained under one recipe with the `resnet_nb.train`
# engine, their training and validation error drawn the way the paper's
# Figure 6 draws them. The defaults are a small run that fits on a CPU in a
# few minutes; the `full` profile runs the paper's schedule on a GPU.

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

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from resnet_nb.data import load_cifar10, train_val_split
from resnet_nb.models import build_model, count_parameters
from resnet_nb.params import ParameterError, check_positive_int
from resnet_nb.report import device_name, provenance
from resnet_nb.train import PAPER_STEP_SCHEDULE, TrainConfig, fit, limit_train, resolve_device

# %% tags=["parameters"]
depths = [20, 56]  # depths to compare (6n + 2), each as a plain net and a ResNet
epochs = 5  # epochs per model
batch_size = 128  # the paper's batch size
lr = 0.1  # peak learning rate (the paper's initial rate)
schedule = "onecycle"  # "onecycle" (ramp up, then down), "step" (the paper's) or "cosine"
warmup = "auto"  # the paper's lr/10 warm-up: "auto" (ResNet-110 with "step"), "on", "off"
weight_decay = 1e-4  # the paper's weight decay
precision = "auto"  # "auto" (bf16 where it is fast), "bf16", "fp16" or "fp32"
device = "auto"  # "auto", "cpu", "cuda", "cuda:N" or "mps"
seed = 0  # seeds weights, data order and augmentation
train_limit = 8000  # training images (None: all 45,000)
val_limit = 1000  # validation images (None: all 5,000)
test_eval = False  # evaluate each model once on the 10,000 test images

# %%
DEPTHS = (20, 32, 44, 56, 110)
if not isinstance(depths, (list, tuple)) or not depths:
    raise ParameterError(
        f"parameter depths={depths!r} is invalid: give a list such as [20, 56]"
    )
for d in depths:
    if d not in DEPTHS:
        raise ParameterError(
            f"parameter depths={depths!r} is invalid: depth {d!r} is not one of "
            f"{', '.join(map(str, DEPTHS))}"
        )
depths = sorted(set(depths))
names = [f"{kind}{d}" for kind in ("plain", "resnet") for d in depths]


def make_config(name: str) -> TrainConfig:
    """The one recipe every network is trained with."""
    return TrainConfig(
        model=name,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        schedule=schedule,
        momentum=0.9,
        nesterov=False,
        weight_decay=weight_decay,
        precision=precision,
        device=device,
        seed=seed,
        train_limit=train_limit,
        padding_mode="zeros",
        warmup=warmup,
    ).validate()


configs = {name: make_config(name) for name in names}
if val_limit is not None:
    check_positive_int("val_limit", val_limit)
if not isinstance(test_eval, bool):
    raise ParameterError(f"parameter test_eval={test_eval!r} is invalid: choose True or False")
dev = resolve_device(device)
print(f"device: {device_name(dev)}; networks: {', '.join(names)}")

# %% [markdown]
# ## The networks
#
# Every network has the paper's CIFAR layout: a 3x3 convolution, then three
# stages of $n$ blocks of two 3x3 convolutions at 16, 32 and 64 channels
# (32x32, 16x16 and 8x8 pixels), global average pooling and one linear
# layer: $6n + 2$ weighted layers. The plain nets are the same stacks without
# shortcuts; the ResNets add an identity shortcut around every block (zero
# padding where the width doubles, the paper's option A), which costs no
# parameters.

# %%
# NBVAL_CHECK_OUTPUT
lines = ["| network | layers | parameters |", "| --- | ---: | ---: |"]
for name in names:
    net = build_model(name)
    depth = int(name.removeprefix("plain").removeprefix("resnet"))
    lines.append(f"| {name} | {depth} | {count_parameters(net):,} |")
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## One recipe for all
#
# The paper trains with SGD (momentum 0.9, weight decay $10^{-4}$) on
# batches of 128, starting at learning rate 0.1 and dividing it by 10 at 32k
# and 48k iterations, stopping at 64k; the augmentation is 4-pixel padding,
# random 32x32 crops and horizontal flips. The engine's `step` schedule
# keeps those proportions (drops at 1/2 and 3/4 of the run) for any number
# of epochs, and the `full` profile runs it for the paper's 64k iterations,
# with the paper's warm-up (learning rate 0.01 until the training error is
# below 80%) for every network.
#
# A short run cannot start at 0.1: in the first few dozen iterations,
# before BatchNorm and the weights have settled, a step that large blows
# ResNet-56 up, and in a few hundred iterations it does not recover (try
# `schedule = "step"` to see it). The paper's 64k iterations leave time to
# recover; a CPU budget does not. So the default recipe keeps the paper's
# peak rate, batch, momentum, weight decay and augmentation, but reaches
# 0.1 by a linear ramp over the first quarter of the run and then decays
# linearly to zero (`onecycle`). Every network below gets exactly the same
# settings, data and seed; only the architecture changes.

# %%
# NBVAL_CHECK_OUTPUT
full = load_cifar10("train")
train, val = train_val_split(full, val_size=5000, seed=0)
train = limit_train(train, train_limit, seed=seed)
val = limit_train(val, val_limit, seed=seed)
test = load_cifar10("test") if test_eval else None
steps = len(train) // batch_size * epochs
print(f"train {len(train):,} images, validation {len(val):,}; "
      f"{steps:,} iterations per network "
      f"(the paper: {PAPER_STEP_SCHEDULE['total_iterations']:,})")

# %%
results = {}
for name in names:
    results[name] = fit(configs[name], train=train, val=val, test=test, progress=False)
    h = results[name].history[-1]
    print(f"{name:>9}: train error {1 - h['train_acc']:6.1%}  "
          f"val error {1 - h['val_acc']:6.1%}  "
          f"{results[name].wall_time_s:5.0f} s ({results[name].precision})")

# %% [markdown]
# ## Training and validation error
#
# The paper's Figure 6 puts the plain nets on the left and the ResNets on
# the right; dashed lines are training error, bold lines test error. We draw
# the validation error instead, since the test set is not for looking at
# curves. The training error is measured on the augmented batches as the
# epoch goes, as the paper's is.

# %% mystnb={"figure": {"caption": "Training error (dashed) and validation error (bold) per epoch. Left: plain networks; right: ResNets. Same recipe, data and seed for every network.", "name": "fig-degradation"}}
fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
colors = plt.cm.viridis_r([0.25 + 0.6 * i / max(1, len(depths) - 1) for i in range(len(depths))])
for ax, kind in zip(axes, ("plain", "resnet")):
    for color, d in zip(colors, depths):
        h = results[f"{kind}{d}"].history
        ep = [r["epoch"] for r in h]
        label = f"{'plain' if kind == 'plain' else 'ResNet'}-{d}"
        ax.plot(ep, [100 * (1 - r["train_acc"]) for r in h], "--", color=color, lw=1.2)
        ax.plot(ep, [100 * (1 - r["val_acc"]) for r in h], "-", color=color, lw=2.5,
                label=label)
    ax.set(xlabel="epoch", title="plain" if kind == "plain" else "ResNet")
    ax.set_xticks(ep)
    ax.grid(alpha=0.3)
    ax.legend(title="dashed: train, bold: validation", fontsize=9, title_fontsize=8)
axes[0].set_ylabel("error (%)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Final errors

# %%
head = "| network | train error | validation error |"
rule = "| --- | ---: | ---: |"
if test_eval:
    head, rule = head + " test error |", rule + " ---: |"
lines = [head + " time |", rule + " ---: |"]
for name in names:
    r = results[name]
    h = r.history[-1]
    row = f"| {name} | {1 - h['train_acc']:.1%} | {1 - h['val_acc']:.1%} |"
    if test_eval:
        row += f" {1 - r.test['acc']:.1%} |"
    lines.append(row + f" {r.wall_time_s:.0f} s |")
display(Markdown("\n".join(lines)))

# %%
def final_error(name: str, key: str = "train_acc") -> float:
    return 1 - results[name].history[-1][key]


shallow, deep = depths[0], depths[-1]
if shallow == deep:
    display(Markdown(f"Only one depth ({deep}) was run: there is nothing to compare."))
else:
    text = []
    for kind, title in (("plain", "plain"), ("resnet", "ResNet")):
        a = final_error(f"{kind}{shallow}")
        b = final_error(f"{kind}{deep}")
        va = final_error(f"{kind}{shallow}", "val_acc")
        vb = final_error(f"{kind}{deep}", "val_acc")
        verdict = "higher" if b > a else "lower"
        text.append(
            f"The {deep}-layer {title} ends with {verdict} training error than the "
            f"{shallow}-layer one ({b:.1%} vs {a:.1%}; validation {vb:.1%} vs {va:.1%})."
        )
    plain_worse = final_error(f"plain{deep}") > final_error(f"plain{shallow}")
    res_better = final_error(f"resnet{deep}") <= final_error(f"resnet{shallow}")
    if plain_worse and res_better:
        text.append("That is the paper's finding: depth hurts the plain net "
                    "and helps (or at least does not hurt) the residual one.")
    elif plain_worse:
        text.append("Depth hurts the plain net, as in the paper; at this budget the "
                    "deeper ResNet has not yet overtaken the shallower one either.")
    else:
        text.append("At this budget the degradation of the plain net does not show; "
                    "the paper's effect needs its full schedule (the `full` profile).")
    gap = final_error(f"plain{deep}") - final_error(f"resnet{deep}")
    text.append(f"At depth {deep} the shortcuts change the training error by "
                f"{-100 * gap:+.1f} percentage points (ResNet minus plain).")
    display(Markdown(" ".join(text)))

# %% [markdown]
# ## Summary
#
# - A plain network gets harder to optimise as it gets deeper: with the same
#   recipe its *training* error rises with depth. That is degradation, and it
#   is an optimisation problem, not overfitting.
# - The same stacks with identity shortcuts (no extra parameters) do not
#   degrade like that: the deep ResNet trains far better than the plain net
#   of its depth, under the same recipe. Whether it also beats the shallower
#   ResNet depends on the budget: the table above shows this run's answer.
# - In the paper, after 64k iterations, plain-56 ends above plain-20 in both
#   training and test error, while ResNet-56 (6.97% test error) beats
#   ResNet-20 (8.75%) {cite}`he2016deep`.
# - Short CPU runs show the early part of the curves only; the `full`
#   profile runs the paper's schedule on all 45,000 training images.

# %% [markdown]
# ## Exercises
#
# 1. Add depth 32 and 44 (`depths = [20, 32, 44, 56]`). Is the ordering of
#    the plain nets' training errors monotonic in depth?
# 2. Train plain-56 with `lr = 0.01`. Does a smaller learning rate cure
#    degradation, or just slow everything down?
# 3. Switch to the paper's schedule, `schedule = "step"`, which starts at
#    0.1. What happens to ResNet-56 in the first epoch? Does
#    `warmup = "on"` (0.01 until the training error is below 80%) save it
#    at this budget?
# 4. Measure the gradient norm of the first layer in plain-56 and ResNet-56
#    after training (see {ref}`chapter-residual-block`). What has changed
#    since initialisation?
# 5. Run the `full` profile on a GPU
#    (`python -m resnet_nb.chapters run notebooks/04_going_deeper.ipynb
#    --profile full`) and compare your final errors with the paper's Table 6.

# %% [markdown]
# ## Provenance

# %%
provenance(
    params={
        "depths": depths, "epochs": epochs, "batch_size": batch_size, "lr": lr,
        "schedule": schedule, "warmup": warmup, "weight_decay": weight_decay, "precision": precision,
        "device": device, "seed": seed, "train_limit": train_limit,
        "val_limit": val_limit, "test_eval": test_eval,
    },
    started=started,
    data_source=f"{train.source}; {len(train):,} used, {len(val):,} for validation",
    device=dev,
)
