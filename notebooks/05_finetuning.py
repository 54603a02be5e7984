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
#
# You will
#
# * load pretrained weights and see the architecture checks at work;
# * freeze a backbone properly, and see what goes wrong with BatchNorm when
#   you do not {cite}`ioffe2015batch`;
# * compare five strategies - from scratch, linear probe, full fine-tuning,
#   discriminative learning rates and gradual unfreezing - across label budgets;
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
import tempfile
from pathlib import Path

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
from resnet_nb.report import device_name, provenance
from resnet_nb.train import TrainConfig, evaluate, fit, limit_train, resolve_device

# %% tags=["parameters"]
source = "checkpoint"  # "checkpoint" (our engine's, works offline) or "imagenet" (torchvision)
checkpoint = "../runs/quick/checkpoint.pt"  # written by `python -m resnet_nb.train --profile quick`
source_images = 20000  # CIFAR-10 images of the source run trained here if `checkpoint` is missing
source_epochs = 4  # epochs of that source run
imagenet_arch = "resnet18"  # "resnet18" or "resnet50" (source="imagenet")
imagenet_weights = None  # local .pth of the ImageNet weights; None: torch's cache or download
imagenet_size = 224  # input side for ImageNet weights (they were trained at 224)
target = "fashion_mnist"  # "fashion_mnist", "cifar10" or "folder"
target_folder = None  # target="folder": a folder with one subfolder of images per class
budgets = [10, 100, 1000]  # labelled images per class (full profile: [10, 100, 1000, 5000])
train_images = 4000  # images each run trains on: epochs = max(1, train_images // labelled)
test_images = 2000  # test images per evaluation (None: the whole test split)
lrs = {"scratch": 0.1, "linear_probe": 0.5, "full": 0.05, "discriminative": 0.1, "gradual": 0.05}
lr_decay = 0.5  # discriminative: rate factor per stage from the head towards the input
batch_size = 32  # batch size of every transfer run
precision = "auto"  # "auto" (bf16 where it is fast), "bf16", "fp16" or "fp32"
device = "auto"  # "auto", "cpu", "cuda", "cuda:N" or "mps"
seed = 0  # seeds label budgets, heads, data order and augmentation

# %%
check_choice("source", source, ("checkpoint", "imagenet"))
if not isinstance(checkpoint, str) or not checkpoint:
    raise ParameterError(f"parameter checkpoint={checkpoint!r} is invalid: give a file path")
check_positive_int("source_images", source_images)
check_positive_int("source_epochs", source_epochs)
check_choice("imagenet_arch", imagenet_arch, ft.IMAGENET_ARCHITECTURES)
if imagenet_weights is not None and not isinstance(imagenet_weights, str):
    raise ParameterError(
        f"parameter imagenet_weights={imagenet_weights!r} is invalid: give a .pth path or None"
    )
check_positive_int("imagenet_size", imagenet_size)
check_choice("target", target, ft.TARGETS)
if target == "folder" and not isinstance(target_folder, str):
    raise ParameterError(
        f"parameter target_folder={target_folder!r} is invalid: target='folder' needs the path "
        "of a folder with one subfolder of images per class"
    )
if not isinstance(budgets, list) or not budgets:
    raise ParameterError(f"parameter budgets={budgets!r} is invalid: give a list, e.g. [10, 100]")
for k in budgets:
    check_positive_int("budgets", k)
check_positive_int("train_images", train_images)
if test_images is not None:
    check_positive_int("test_images", test_images)
if not isinstance(lrs, dict) or sorted(lrs) != sorted(ft.STRATEGIES):
    raise ParameterError(
        f"parameter lrs={lrs!r} is invalid: give one peak rate for each of {ft.STRATEGIES}"
    )
for name, value in lrs.items():
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ParameterError(f"parameter lrs[{name!r}]={value!r} is invalid: use a number > 0")
if isinstance(lr_decay, bool) or not isinstance(lr_decay, (int, float)) or not 0 < lr_decay <= 1:
    raise ParameterError(f"parameter lr_decay={lr_decay!r} is invalid: it must be in (0, 1]")
check_positive_int("batch_size", batch_size)
TrainConfig(precision=precision, device=device, seed=seed).validate()
dev = resolve_device(device)
print(f"device: {device_name(dev)}")

# %% [markdown]
# ## The pretrained source
#
# The default source is a checkpoint written by the training engine:
# `python -m resnet_nb.train --profile quick` trains a ResNet-20 on CIFAR-10
# and writes `runs/quick/checkpoint.pt`. If there is none, this chapter trains
# a smaller one itself (and keeps it in the cache folder for the next run).
# `load_checkpoint_source` rebuilds the network named in the checkpoint's
# config, loads the weights and keeps the normalisation statistics of the
# source's training data: the weights expect their inputs prepared that way.

# %%
if source == "imagenet":
    src = ft.load_imagenet_source(imagenet_arch, path=imagenet_weights, image_size=imagenet_size)
    source_origin = "given"
else:
    ckpt = Path(checkpoint)
    source_origin = "given" if ckpt.is_file() else "cached"
    if source_origin == "cached":
        ckpt = (cache_dir() / "finetune" / f"resnet20-cifar10-{source_images}x{source_epochs}"
                f"-seed{seed}" / "checkpoint.pt")
        if ckpt.is_file():
            print(f"no checkpoint at {checkpoint}; using the source run cached at {ckpt}")
        else:
            source_origin = "trained"
            print(f"no checkpoint at {checkpoint}; training a small source run instead: ResNet-20, "
                  f"{source_images:,} CIFAR-10 images, {source_epochs} epochs -> {ckpt.parent}")
            cifar = load_cifar10("train")
            cifar_train, _ = train_val_split(cifar, val_size=5000, seed=0)
            cifar_train = limit_train(cifar_train, source_images, seed=seed)
            run = fit(
                TrainConfig(model="resnet20", epochs=source_epochs, lr=0.2, label_smoothing=0.1,
                            precision=precision, device=device, seed=seed, out=str(ckpt.parent)),
                train=cifar_train, val=None, test=None, progress=False,
            )
            print(f"trained in {run.wall_time_s:.0f} s")
    src = ft.load_checkpoint_source(ckpt)
print(src.description)
print(f"inputs: RGB {src.image_size}x{src.image_size}, mean {tuple(round(m, 3) for m in src.mean)}, "
      f"std {tuple(round(s, 3) for s in src.std)}")

# %% [markdown]
# Loading checks the architecture. Weights of another network - here the
# source's loaded into a ResNet-32 - fail with the keys that do not match; a
# model with another number of classes gets the body of the network and keeps
# its own new head, and a note says so.

# %%
other = build_model("resnet32" if src.architecture != "resnet32" else "resnet20")
try:
    ft.load_weights(other, src.model.state_dict(), source="the source weights")
except ft.ArchitectureMismatchError as err:
    print(f"ArchitectureMismatchError: {err}"[:400])
five = build_model(src.architecture, num_classes=5)
for note in ft.load_weights(five, src.model.state_dict(), source="the source weights"):
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
target_train, target_test = ft.load_target(target, folder=target_folder, size=src.image_size,
                                           seed=seed)
target_test = limit_train(target_test, test_images, seed=seed)
classes = target_train.classes
print(target_train)
print(f"test: {len(target_test):,} images")
largest = max(budgets)
counts = torch.bincount(target_train.labels, minlength=len(classes))
if largest > int(counts.min()):
    raise ParameterError(f"parameter budgets={budgets!r} is invalid: the smallest class of "
                         f"{target} has {int(counts.min())} training images")
epochs_for = {k: max(1, train_images // (k * len(classes))) for k in budgets}
display(Markdown("| labels per class | labelled images | epochs |\n|---:|---:|---:|\n" + "\n".join(
    f"| {k} | {k * len(classes):,} | {epochs_for[k]} |" for k in budgets)))

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
    bn_training = sum(isinstance(x, torch.nn.BatchNorm2d) and x.training for x in m.modules())
    rows.append(f"| {strategy} | {count_parameters(m, trainable_only=True):,} | "
                f"{count_parameters(m):,} | {frozen_bn} | {bn_training} |")
display(Markdown("| strategy | trainable parameters | all parameters | frozen BN | BN in train "
                 "mode after `model.train()` |\n|---|---:|---:|---:|---:|\n" + "\n".join(rows)))

# %% [markdown]
# Now the pitfall with numbers: two linear probes at the middle budget, one
# with `requires_grad=False` only, one with the BatchNorms frozen too. After
# training we compare the backbones with the pretrained one: how far the
# running means moved (in units of the running standard deviation) and, for
# our CIFAR-10 source, how well the backbone with its original head still does
# on the source task.

# %%
k_mid = sorted(budgets)[len(budgets) // 2]
common = dict(labels_per_class=k_mid, epochs=epochs_for[k_mid], batch_size=batch_size,
              precision=precision, device=device, seed=seed)
naive = ft.transfer(src, "linear_probe", target_train, target_test, lr=lrs["linear_probe"],
                    freeze_batchnorm=False, **common)
proper = ft.transfer(src, "linear_probe", target_train, target_test, lr=lrs["linear_probe"],
                     **common)


def bn_drift(model: torch.nn.Module) -> float:
    """Mean |running-mean change| / running std over every BatchNorm channel."""
    before = {n: b for n, b in src.model.named_buffers()}
    shifts = []
    for name, buf in model.named_buffers():
        if name.endswith("running_mean") and not name.startswith("fc"):
            var = before[name.replace("running_mean", "running_var")]
            shifts.append(((buf - before[name]).abs() / var.sqrt()).flatten())
    return float(torch.cat(shifts).mean())


def source_task_acc(model: torch.nn.Module) -> float | None:
    """Accuracy of ``model``'s backbone with the source head on CIFAR-10 test images."""
    if source != "checkpoint":
        return None
    m = copy.deepcopy(model)
    m.fc = copy.deepcopy(src.model.fc)
    cifar_test = limit_train(load_cifar10("test"), 1000, seed=seed)  # a random 1,000
    return evaluate(m, cifar_test, mean=src.mean, std=src.std, precision=precision)["acc"]


before_acc = source_task_acc(src.model)
pitfall = {
    "requires_grad=False only": (naive, bn_drift(naive.model), source_task_acc(naive.model)),
    "FrozenBatchNorm2d": (proper, bn_drift(proper.model), source_task_acc(proper.model)),
}
fmt = lambda a: "n/a" if a is None else f"{a:.1%}"  # noqa: E731
display(Markdown(
    f"| linear probe, {k_mid} labels per class | BN running-mean shift | source task "
    f"(pretrained: {fmt(before_acc)}) | target test accuracy |\n|---|---:|---:|---:|\n"
    + "\n".join(f"| {name} | {drift:.3f} | {fmt(acc)} | {r.test_acc:.1%} |"
                for name, (r, drift, acc) in pitfall.items())))
naive_drift, proper_drift = pitfall["requires_grad=False only"][1], pitfall["FrozenBatchNorm2d"][1]
text = (f"With `requires_grad=False` alone the running means moved by {naive_drift:.3f} standard "
        f"deviations on average, with `FrozenBatchNorm2d` by {proper_drift:.3f}. ")
if before_acc is not None:
    naive_src, proper_src = pitfall["requires_grad=False only"][2], pitfall["FrozenBatchNorm2d"][2]
    text += (f"On its own CIFAR-10 test images the pretrained network scores {before_acc:.1%}; "
             f"the backbone after the naive probe scores {naive_src:.1%} "
             f"({(naive_src - before_acc) * 100:+.1f} points), after the proper one "
             f"{proper_src:.1%} ({(proper_src - before_acc) * 100:+.1f}): the naive probe "
             + ("changed what the supposedly frozen network computes. "
                if abs(naive_src - before_acc) > abs(proper_src - before_acc)
                else "left the source task no worse off here, but its backbone still moved. "))
diff = naive.test_acc - proper.test_acc
text += (f"On the target, the naive probe reaches {naive.test_acc:.1%} and the proper one "
         f"{proper.test_acc:.1%}: " + (
             "letting the statistics adapt helped here, but then the backbone is no longer the "
             "pretrained one, and the head was trained on features that kept changing."
             if diff > 0 else
             "the drifting statistics did not even buy accuracy on the target."))
display(Markdown(text))

# %% [markdown]
# ## Discriminative rates and gradual unfreezing
#
# Early layers hold generic features (edges, colours) and late layers
# task-specific ones, so fine-tuning can change the early layers less.
# Discriminative learning rates give each stage its own rate, decaying by
# `lr_decay` per stage from the head to the input - one optimizer parameter
# group per stage:

# %%
# NBVAL_CHECK_OUTPUT
m = copy.deepcopy(src.model)
ft.replace_head(m, len(classes), seed=seed)
groups = ft.discriminative_param_groups(m, lr=lrs["discriminative"], lr_decay=lr_decay)
display(Markdown("| group | parameters | learning rate |\n|---|---:|---:|\n" + "\n".join(
    f"| {g['name']} | {sum(p.numel() for p in g['params']):,} | {g['lr']:.5f} |"
    for g in groups)))

# %% [markdown]
# Gradual unfreezing trains the head first and then unfreezes one more stage
# at a time, towards the input, each stage a short run of its own. For the
# smallest budget's epochs:

# %%
# NBVAL_CHECK_OUTPUT
for i, (n_epochs, trainable) in enumerate(ft.unfreezing_stages(m, epochs_for[min(budgets)])):
    print(f"stage {i + 1}: {n_epochs} epoch(s), training {', '.join(trainable)}")

# %% [markdown]
# ## Every strategy at every budget
#
# Each run starts from the same source (or, for `scratch`, from a fresh
# network of the same architecture), trains on the same labelled images with
# the engine's augmentation and one-cycle schedule, and is measured once on the
# same test images.

# %%
results = []
for k in budgets:
    for strategy in ft.STRATEGIES:
        r = ft.transfer(src, strategy, target_train, target_test, labels_per_class=k,
                        epochs=epochs_for[k], batch_size=batch_size, lr=lrs[strategy],
                        lr_decay=lr_decay, precision=precision, device=device, seed=seed)
        results.append(r)
        print(f"{strategy:>14}  k={k:<5} test acc {r.test_acc:.1%}  ({r.wall_time_s:.0f} s)")

# %%
acc = {(r.strategy, r.labels_per_class): r.test_acc for r in results}
header = "| strategy | " + " | ".join(f"{k} per class" for k in budgets) + " |"
display(Markdown(header + "\n|---|" + "---:|" * len(budgets) + "\n" + "\n".join(
    f"| {s} | " + " | ".join(f"{acc[s, k]:.1%}" for k in budgets) + " |"
    for s in ft.STRATEGIES)))

# %% mystnb={"figure": {"caption": "Test accuracy on the target against the number of labelled images per class, for every strategy (same source, same images, same test set).", "name": "fig-budgets"}}
fig, ax = plt.subplots(figsize=(6, 4))
for s in ft.STRATEGIES:
    ax.plot(budgets, [acc[s, k] * 100 for k in budgets], marker="o", label=s)
ax.set_xscale("log")
ax.set_xticks(budgets, [str(k) for k in budgets])
ax.set_xlabel("labelled images per class")
ax.set_ylabel("test accuracy (%)")
ax.set_title(f"{target}: from {src.architecture} ({source})")
ax.grid(alpha=0.3)
ax.legend(fontsize=8, loc="best", framealpha=0.8)
fig.tight_layout()
fig.savefig(Path(tempfile.gettempdir()) / "05_budgets.png", dpi=100)
plt.show()

# %%
best = {k: max(ft.STRATEGIES, key=lambda s: acc[s, k]) for k in budgets}
lines = [f"{{numref}}`fig-budgets` plots the table. The best strategy at {k} labels per "
         f"class is **{best[k]}** ({acc[best[k], k]:.1%})." for k in budgets[:1]]
lines += [f"At {k} per class it is **{best[k]}** ({acc[best[k], k]:.1%})." for k in budgets[1:]]
for k in (min(budgets), max(budgets)):
    transfer_best = max((s for s in ft.STRATEGIES if s != "scratch"), key=lambda s: acc[s, k])
    gap = acc[transfer_best, k] - acc["scratch", k]
    lines.append(
        f"At {k} per class the best pretrained start ({transfer_best}, "
        f"{acc[transfer_best, k]:.1%}) is {abs(gap) * 100:.1f} points "
        f"{'above' if gap >= 0 else 'below'} training from scratch ({acc['scratch', k]:.1%}).")
probe_gain = acc["linear_probe", max(budgets)] - acc["linear_probe", min(budgets)]
full_gain = acc["full", max(budgets)] - acc["full", min(budgets)]
lines.append(
    f"From {min(budgets)} to {max(budgets)} labels per class the linear probe changes by "
    f"{probe_gain * 100:+.1f} points and full fine-tuning by {full_gain * 100:+.1f}. "
    f"Every run trains on about {train_images:,} images, so a larger budget means more "
    "distinct images but fewer epochs over them: at this compute, extra labels "
    + ("paid off for full fine-tuning." if full_gain > 0 else
       "did not pay off for full fine-tuning."))
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
chosen = max((r for r in results if r.labels_per_class == max(budgets)), key=lambda r: r.test_acc)
model = chosen.model.eval()
folder = Path(tempfile.mkdtemp(prefix="resnet_nb_predict_"))
raw_test = ft.load_target(target, folder=target_folder, size=src.image_size, seed=seed)[1]
paths = []
for i in range(4):
    path = folder / f"test_{i}.png"
    Image.fromarray(raw_test.images[i].permute(1, 2, 0).numpy()).save(path)
    paths.append(path)
prep = dict(mean=chosen.mean, std=chosen.std, size=chosen.image_size)
from_files = resnet_nb.predict(model, paths, classes, k=3, **prep)
from_pil = resnet_nb.predict(model, [Image.open(p) for p in paths], classes, k=3, **prep)
from_tensors = resnet_nb.predict(model, raw_test.images[:4], classes, k=3, **prep)
same = [a[0][0] for a in from_files] == [b[0][0] for b in from_pil] == [c[0][0] for c in from_tensors]
print(f"model: {chosen.strategy}, {chosen.labels_per_class} labels per class; "
      f"files, PIL and tensors agree: {same}")
for path, label, top in zip(paths, raw_test.labels[:4], from_files, strict=True):
    shown = ", ".join(f"{name} {p:.0%}" for name, p in top)
    print(f"{path.name}  true: {classes[int(label)]:<12} predicted: {shown}")

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
    f"Largest absolute difference of the logits from the eager model, on 16 test images "
    f"(largest logit {parity['max_abs_logit']:.2f}): TorchScript {parity['torchscript']:.2e}, "
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
cam = F.interpolate(cam, size=x_all.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
cam = cam / cam.flatten(1).max(1).values.clamp_min(1e-12)[:, None, None]
package_cam = grad_cam(model, x_all.detach(), layer=layer)
print(f"step by step vs resnet_nb.inference.grad_cam: largest difference "
      f"{float((cam - package_cam).abs().max()):.1e}")

# %% mystnb={"figure": {"caption": "Grad-CAM of the fine-tuned model for test images it classifies correctly (top) and wrongly (bottom): bright regions raised the predicted class's score.", "name": "fig-gradcam"}}
truth = raw_test.labels[:200]
right = (predicted == truth).nonzero().flatten()[:4].tolist()
wrong = (predicted != truth).nonzero().flatten()[:4].tolist()
fig, axes = plt.subplots(2, 4, figsize=(8, 4.6))
for row, picks in enumerate((right, wrong)):
    for col in range(4):
        ax = axes[row, col]
        ax.axis("off")
        if col >= len(picks):
            continue
        i = picks[col]
        ax.imshow(raw_test.images[i].permute(1, 2, 0).numpy())
        ax.imshow(package_cam[i].numpy(), cmap="jet", alpha=0.45)
        ax.set_title(f"{classes[int(predicted[i])]}\n(true: {classes[int(truth[i])]})",
                     fontsize=8, color="black" if row == 0 else "firebrick")
fig.tight_layout()
fig.savefig(Path(tempfile.gettempdir()) / "05_gradcam.png", dpi=100)
plt.show()

# %%
display(Markdown(
    f"Of the first 200 test images the model classifies {len((predicted == truth).nonzero())} "
    f"correctly; {{numref}}`fig-gradcam` shows {len(right)} of them and {len(wrong)} of its "
    "mistakes. Read the maps with care at this resolution: the last stage's maps are "
    f"{store['A'].shape[-1]}x{store['A'].shape[-1]} pixels, so each bright cell covers a "
    f"{src.image_size // store['A'].shape[-1]}-pixel square of the image."))

# %% [markdown]
# ## Summary

# %%
k_lo, k_hi = min(budgets), max(budgets)
display(Markdown("\n".join([
    f"* The source was {src.description}" + {
        "given": ".",
        "trained": " (trained in this run, as no checkpoint was found).",
        "cached": " (no checkpoint was found; an earlier run of this chapter trained it and "
                  "kept it in the cache).",
    }[source_origin],
    "* Loading checks the architecture: other networks' weights fail with the keys that do not "
    "match; another number of classes replaces the head and says so.",
    f"* Freezing BatchNorm matters: with `requires_grad=False` alone the running statistics "
    f"moved by {naive_drift:.3f} standard deviations; with `FrozenBatchNorm2d` by "
    f"{proper_drift:.3f}.",
    f"* Best strategy at {k_lo} labels per class: {best[k_lo]} ({acc[best[k_lo], k_lo]:.1%}); "
    f"at {k_hi}: {best[k_hi]} ({acc[best[k_hi], k_hi]:.1%}); from scratch: "
    f"{acc['scratch', k_lo]:.1%} and {acc['scratch', k_hi]:.1%}.",
    f"* TorchScript and ONNX reproduce the eager logits to {max(parity['torchscript'], parity['onnx']):.0e}.",
])))

# %% [markdown]
# These runs are short (a few hundred optimizer steps at most) so that the
# chapter runs on a laptop CPU; the full profile trains longer, on more
# labels, from a longer source run. How much a pretrained start helps depends
# on how good and how related the source is: a source trained for a few CPU
# minutes on CIFAR-10 carries weaker features than ImageNet weights.
#
# ## Exercises
#
# 1. Run the chapter with `source="imagenet"` (online, or with a local copy of
#    the weights in `imagenet_weights`). Which strategies gain most?
# 2. Set `lr_decay=1.0`: discriminative rates become full fine-tuning at the
#    head's rate. Compare with `full` at the same rate.
# 3. Train the probe with `freeze_batchnorm=False` for more epochs and plot the
#    BatchNorm drift against the epoch. Where does it settle, and why there?
# 4. Put a few photos of your own in `my_images/<class>/` folders and run the
#    chapter with `target="folder"`, `target_folder="my_images"`.
# 5. Compute Grad-CAM at `layer2` instead of the last stage. What do you gain
#    in resolution, and what do the maps lose?
#
# ## Provenance

# %%
record = provenance(
    params={
        "source": source, "checkpoint": checkpoint, "source_images": source_images,
        "source_epochs": source_epochs, "imagenet_arch": imagenet_arch,
        "imagenet_weights": imagenet_weights, "imagenet_size": imagenet_size, "target": target,
        "target_folder": target_folder, "budgets": budgets, "train_images": train_images,
        "test_images": test_images, "lrs": lrs, "lr_decay": lr_decay, "batch_size": batch_size,
        "precision": precision, "device": device, "seed": seed,
    },
    started=started,
    data_source=f"{src.description}; target: {target_train.source}",
    device=dev,
)
