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
# (chapter-full-resnet)=
# # The full ResNet
#
# The previous chapter built the residual block. Here we stack blocks into whole
# networks: the ImageNet family ResNet-18, -34, -50, -101 and -152, and the small
# networks the paper trains on CIFAR-10 {cite}`he2016deep`.
#
# You will
#
# * build one stage of ResNet-50 by hand and check it against the library's;
# * load torchvision's weights into our ResNets and see identical outputs;
# * count parameters and multiply-accumulates and put them next to the
#   paper's figures;
# * rebuild the paper's CIFAR ResNets (20 to 110 layers) and their Table 6 counts;
# * draw the layouts of ResNet-18 and ResNet-20 from the models themselves;
# * see why the ImageNet stem is the wrong start for a 32x32 image.
#
# Nothing is trained here: every number comes from building the networks and
# pushing one input through them.

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

import inspect

import matplotlib.pyplot as plt
import torch
import torchvision
from IPython.display import Code, Markdown, display
from torch import nn

from resnet_nb import models
from resnet_nb.models import (
    BasicBlock,
    Bottleneck,
    ResNet,
    build_model,
    cifar_resnet,
    conv1x1,
    count_macs,
    count_parameters,
    feature_map_shapes,
    macs_by_module,
)
from resnet_nb.diagrams import draw_layouts
from resnet_nb.params import ParameterError, check_positive_int
from resnet_nb.report import provenance
from resnet_nb.viz import use_book_style

use_book_style()  # readable fonts; figures as SVG

# %% tags=["parameters"]
seed = 0  # seeds the random weights and inputs
imagenet_size = 224  # input side for the cost table (the paper's 224x224)
compare_size = 64  # input side for the torchvision comparison (small: fast)
cifar_size = 32  # CIFAR-10 image side

# %%
if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
    raise ParameterError(
        f"parameter seed={seed!r} is invalid: use an integer >= 0, e.g. 0"
    )
check_positive_int("imagenet_size", imagenet_size)
check_positive_int("compare_size", compare_size)
check_positive_int("cifar_size", cifar_size)
_ = torch.manual_seed(seed)


# %% [markdown]
# A small helper turns rows of values into a Markdown table, so the tables below
# are computed, never typed.


# %%
def markdown_table(header: list[str], rows: list[list[object]]) -> Markdown:
    """A Markdown table with ``header`` and ``rows`` (values shown by str)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return Markdown("\n".join(lines))


# %% [markdown]
# ## The ImageNet family
#
# Every member of the family has the same skeleton {cite}`he2016deep`:
#
# 1. a **stem**: a 7x7 convolution with stride 2 and a 3x3 max pool with stride 2,
#    which shrink a 224x224 image to 56x56 with 64 channels;
# 2. four **stages** (`layer1` .. `layer4`, the paper's conv2_x .. conv5_x) of
#    residual blocks with base widths 64, 128, 256 and 512; stages 2-4 halve the
#    spatial size in their first block;
# 3. global average pooling and one fully connected layer.
#
# The members differ only in the block and the number of blocks per stage.
# ResNet-18 and -34 use the `BasicBlock` (two 3x3 convolutions); ResNet-50, -101
# and -152 the `Bottleneck` (1x1 reduce, 3x3, 1x1 expand by 4). Read back from
# the built models:

# %%
# NBVAL_CHECK_OUTPUT
NAMES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
ours = {name: getattr(models, name)() for name in NAMES}


def blocks_per_stage(model: ResNet) -> list[int]:
    """Number of blocks in layer1..layer4."""
    return [len(getattr(model, f"layer{i}")) for i in range(1, 5)]


def weighted_layers(model: nn.Module) -> int:
    """Convolutions and linear layers, without the projection shortcuts."""
    return sum(
        isinstance(m, (nn.Conv2d, nn.Linear)) and "downsample" not in name
        for name, m in model.named_modules()
    )


display(
    markdown_table(
        [
            "model",
            "block",
            "blocks per stage",
            "weighted layers",
            "final width",
        ],
        [
            [
                name,
                type(model.layer1[0]).__name__,
                blocks_per_stage(model),
                weighted_layers(model),
                model.fc.in_features,
            ]
            for name, model in ours.items()
        ],
    )
)

# %% [markdown]
# The depth in the name counts the weighted layers on the main path: the stem
# convolution, two or three convolutions per block and the classifier.
#
# {numref}`fig-layouts` draws ResNet-18 and the paper's ResNet-20 stage by
# stage. `resnet_nb.diagrams.draw_layouts` reads the stages from the module
# and the channels and feature-map sizes from forward hooks on one dummy
# input (224x224 for ResNet-18, 32x32 for ResNet-20); each box grows with
# the side of the map it outputs.

# %% mystnb={"figure": {"caption": "The layouts of ResNet-18 on a 224x224 input (top) and of the paper's CIFAR ResNet-20 on a 32x32 input (bottom), read from the models: stem, stages with their blocks, channels and output map size, and the head.", "name": "fig-layouts"}, "image": {"alt": "Two rows of boxes. ResNet-18: input 3 channels 224x224; stem 7x7 conv stride 2 and max pool stride 2, 64 channels 56x56; layer1 to layer4 with 2 basic blocks each, 64, 128, 256 and 512 channels at 56x56, 28x28, 14x14 and 7x7; head average pool and fc 1000. ResNet-20: input 32x32; stem 3x3 conv, 16 channels 32x32; layer1 to layer3 with 3 basic blocks each, 16, 32 and 64 channels at 32x32, 16x16 and 8x8; head average pool and fc 10."}}
fig = draw_layouts(
    [
        (
            "ResNet-18, 224x224 input",
            models.resnet18(),
            (1, 3, imagenet_size, imagenet_size),
        ),
        (
            "ResNet-20 (CIFAR), 32x32 input",
            cifar_resnet(20),
            (1, 3, cifar_size, cifar_size),
        ),
    ]
)
plt.show()
#
# Why switch blocks at 50 layers? A bottleneck block does about the work of a
# basic block while its output is four times wider, which is what makes 50-152
# layers affordable. One block of each kind in stage 3:

# %%
# NBVAL_CHECK_OUTPUT
basic = BasicBlock(256, 256)
bottleneck = Bottleneck(1024, 256)
display(
    markdown_table(
        ["block", "in -> out channels", "parameters"],
        [
            [
                "BasicBlock(256, 256)",
                "256 -> 256",
                f"{count_parameters(basic):,}",
            ],
            [
                "Bottleneck(1024, 256)",
                "1024 -> 1024",
                f"{count_parameters(bottleneck):,}",
            ],
        ],
    )
)

# %% [markdown]
# ## One stage, step by step
#
# A stage is a `nn.Sequential` of blocks. Only its first block can change the
# shape, so only the first block may need a projection shortcut. Take stage 2
# (`layer2`) of ResNet-50: it receives 256 channels at 56x56 and returns
# 512 channels at 28x28.
#
# **Step 1: the first block.** Its main path changes both the width and the
# spatial size, so the shortcut must too: a 1x1 convolution with stride 2 and a
# BatchNorm (the paper's projection shortcut).

# %%
# NBVAL_CHECK_OUTPUT
inplanes, planes, stride = 256, 128, 2
outplanes = planes * Bottleneck.expansion
projection = nn.Sequential(
    conv1x1(inplanes, outplanes, stride), nn.BatchNorm2d(outplanes)
)
first = Bottleneck(inplanes, planes, stride, projection)

x = torch.randn(1, inplanes, 56, 56)
print("input:              ", tuple(x.shape))
print("after the 1st block:", tuple(first(x).shape))

# %% [markdown]
# **Step 2: the other blocks.** They see `outplanes` channels in and out and keep
# the size, so their shortcut is the identity. ResNet-50 has four blocks in
# stage 2.

# %%
# NBVAL_CHECK_OUTPUT
rest = [Bottleneck(outplanes, planes) for _ in range(3)]
stage = nn.Sequential(first, *rest)
print("after the stage:    ", tuple(stage(x).shape))
print(
    "shortcuts:",
    ["projection" if b.downsample is not None else "identity" for b in stage],
)

# %% [markdown]
# **Step 3: compare with the library.** Our hand-built stage has the same module
# names and shapes as `layer2` of the library's ResNet-50, so the library's
# weights load into it and both compute the same function.

# %%
# NBVAL_CHECK_OUTPUT
library_stage = ours["resnet50"].layer2.eval()
# strict: every key must match
stage.load_state_dict(library_stage.state_dict())
stage.eval()
with torch.no_grad():
    same = torch.allclose(stage(x), library_stage(x), atol=1e-6)
ours_n = count_parameters(stage)
library_n = count_parameters(library_stage)
print(f"parameters: ours {ours_n:,}, library {library_n:,}")
print("same outputs:", same)
assert same

# %% [markdown]
# The library does the same in `ResNet._make_layer`, which every stage of every
# member of the family goes through:

# %%
display(Code(inspect.getsource(ResNet._make_layer), language="python"))

# %% [markdown]
# and `forward` chains stem, stages, pooling and classifier:

# %%
display(Code(inspect.getsource(ResNet.forward), language="python"))

# %% [markdown]
# One detail differs from the paper. In the library's `Bottleneck`, as in
# torchvision's, the stride of a stage's first block sits on the 3x3 convolution;
# the paper puts it on the first 1x1 convolution. The weights have the same
# shapes either way; we measure the difference in compute below.
#
# ## Our ResNets are torchvision's ResNets
#
# Our models use torchvision's module names and shapes, so a torchvision
# state_dict loads into them with `strict=True`. We give torchvision's models
# random BatchNorm statistics (so that the check also covers BatchNorm), copy
# their weights into ours and compare the outputs on one random image.

# %%
# NBVAL_CHECK_OUTPUT
generator = torch.Generator().manual_seed(seed)
image = torch.randn(1, 3, compare_size, compare_size, generator=generator)
rows = []
for name, model in ours.items():
    reference = getattr(torchvision.models, name)(weights=None).eval()
    with torch.no_grad():
        for m in reference.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=generator)
                m.running_var.uniform_(0.5, 1.5, generator=generator)
    model.load_state_dict(reference.state_dict(), strict=True)
    model.eval()
    with torch.no_grad():
        match = torch.allclose(
            model(image), reference(image), atol=1e-5, rtol=0
        )
    assert match, name
    rows.append(
        [
            name,
            len(model.state_dict()),
            f"{count_parameters(reference):,}",
            match,
        ]
    )
    del reference
display(
    markdown_table(
        [
            "model",
            "state_dict entries",
            "torchvision parameters",
            "outputs equal (atol 1e-5)",
        ],
        rows,
    )
)

# %% [markdown]
# So anything trained with torchvision, including its pretrained ImageNet
# weights, can be used with the models of this book (the fine-tuning chapter
# does exactly that).
#
# ## Parameters and multiply-accumulates
#
# The paper measures cost in "FLOPs" that are in fact multiply-adds: 1.8,
# 3.6, 3.8, 7.6 and 11.3 billion at 224x224 for ResNet-18 to -152
# {cite}`he2016deep`. This book calls one multiply-add a
# *multiply-accumulate* (MAC) and keeps "FLOPs" for floating-point
# operations, two per MAC, the unit of a processor's FLOP/s.
# `count_macs` runs one forward pass under PyTorch's
# `torch.utils.flop_counter.FlopCounterMode`, which counts convolutions and
# matrix products, and returns MACs (`count_flops` returns twice as many).
#
# To see what the stride placement costs, we also move the stride of each
# stage's first bottleneck back onto the 1x1 convolution, as in the paper, and
# count again (same weights, so same parameters).

# %%
# NBVAL_CHECK_OUTPUT
PAPER_GMACS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8,
               "resnet101": 7.6, "resnet152": 11.3}  # fmt: skip
size = (1, 3, imagenet_size, imagenet_size)


def stride_on_first_1x1(model: ResNet) -> ResNet:
    """Move each stage's first stride from the 3x3 to the first 1x1 conv."""
    for layer in (model.layer2, model.layer3, model.layer4):
        layer[0].conv1.stride, layer[0].conv2.stride = (2, 2), (1, 1)
    return model


params, gmacs, gmacs_paper_style = {}, {}, {}
for name, model in ours.items():
    params[name] = count_parameters(model)
    gmacs[name] = count_macs(model, size) / 1e9
    if isinstance(model.layer1[0], Bottleneck):
        paper_style = stride_on_first_1x1(model)
        gmacs_paper_style[name] = count_macs(paper_style, size) / 1e9

rows = []
for name in NAMES:
    as_paper = gmacs_paper_style.get(name)
    rows.append(
        [
            name,
            f"{params[name] / 1e6:.1f}M",
            f"{gmacs[name]:.2f}",
            "same" if as_paper is None else f"{as_paper:.2f}",
            PAPER_GMACS[name],
        ]
    )
header = ["model", "parameters", "GMACs", "stride on 1x1 (as paper)", "paper"]
display(markdown_table(header, rows))

# %%
# NBVAL_CHECK_OUTPUT
extra = gmacs["resnet50"] - gmacs_paper_style["resnet50"]
worst = max(
    abs(gmacs_paper_style.get(n, gmacs[n]) - PAPER_GMACS[n]) for n in NAMES
)
display(
    Markdown(
        f"For the bottleneck networks the torchvision layout costs "
        f"{extra:.2f} GMACs more (ResNet-50: {gmacs['resnet50']:.2f} instead "
        f"of {gmacs_paper_style['resnet50']:.2f}): its strided 3x3 "
        f"convolution runs at the input resolution of the stage. With the "
        f"stride on the 1x1 convolution, all five match the paper's figures "
        f"to within {worst:.2f} GMACs. ResNet-152 has "
        f"{params['resnet152'] / params['resnet50']:.1f}x the parameters of "
        f"ResNet-50 and {gmacs['resnet152'] / gmacs['resnet50']:.1f}x its "
        f"MACs."
    )
)

# %% [markdown]
# Even the deepest member costs fewer MACs than VGG-19 (19.6 billion,
# {cite}`he2016deep`): the stem shrinks the image early, and the bottleneck keeps
# the 3x3 convolutions narrow.

# %% [markdown]
# ## The paper's CIFAR-10 ResNets
#
# For CIFAR-10 the paper uses much smaller networks (section 4.2 of
# {cite}`he2016deep`): a 3x3 convolution to 16 channels, three stages of $n$
# basic blocks with 16, 32 and 64 channels on 32x32, 16x16 and 8x8 maps, global
# average pooling and a 10-way classifier, $6n + 2$ weighted layers in all.
# Where a stage doubles the width, the shortcut is option A: take every second
# pixel and pad the new channels with zeros, which adds no parameters. Option B
# projects with a 1x1 convolution instead. A *plain* net is the same stack with
# no shortcuts.
#
# The paper's Table 6 gives 0.27M, 0.46M, 0.66M, 0.85M and 1.7M parameters for
# depths 20, 32, 44, 56 and 110.

# %%
# NBVAL_CHECK_OUTPUT
PAPER_TABLE6 = {20: "0.27M", 32: "0.46M", 44: "0.66M", 56: "0.85M",
                110: "1.7M"}  # fmt: skip
cifar_size_4d = (1, 3, cifar_size, cifar_size)
cifar_rows = []
for depth, paper in PAPER_TABLE6.items():
    net = cifar_resnet(depth)
    n_a = count_parameters(net)
    digits = len(paper.rstrip("M").split(".")[1])
    cifar_rows.append(
        [
            f"ResNet-{depth}",
            (depth - 2) // 6,
            f"{n_a:,}",
            f"{n_a / 1e6:.{digits}f}M",
            paper,
            f"{count_parameters(cifar_resnet(depth, plain=True)):,}",
            f"{count_parameters(cifar_resnet(depth, shortcut='B')):,}",
            f"{count_macs(net, cifar_size_4d) / 1e6:.0f}",
        ]
    )
display(
    markdown_table(
        [
            "model",
            "n",
            "parameters (A)",
            "rounded",
            "paper (Table 6)",
            "plain",
            "option B",
            "MMACs",
        ],  # fmt: skip
        cifar_rows,
    )
)

# %% [markdown]
# The counts round to the paper's. The plain nets have exactly as many
# parameters as the option-A ResNets, since the zero-padding shortcut has none:
# comparing a plain net with its ResNet twin (the degradation experiment of a
# later chapter) changes the wiring and nothing else. Option B adds the same two
# projections (16 to 32 and 32 to 64 channels) at every depth.
#
# ### Where the zero channels go
#
# The paper's Torch code appends shortcut A's zero channels after the
# identity; most PyTorch re-implementations, and the CIFAR checkpoints they
# publish, put half before and half after
# (`F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))`).
# The two layouts have the same parameter names and shapes but are
# different networks, so `cifar_resnet(depth, pad="after" | "split")`
# builds either and remembers which (`model.pad`), and
# `models.load_cifar_state_dict` loads a third-party checkpoint only when
# told its layout, failing loudly on a layout or a name it cannot match.

# %%
# NBVAL_CHECK_OUTPUT
after_net = cifar_resnet(20).eval()
split_net = cifar_resnet(20, pad="split").eval()
split_net.load_state_dict(after_net.state_dict())  # same names, same shapes
probe = torch.randn(2, 3, cifar_size, cifar_size)
with torch.no_grad():
    gap = (after_net(probe) - split_net(probe)).abs().max().item()
print(f"pad: {after_net.pad!r} vs {split_net.pad!r}")
print(f"same weights, outputs differ: {gap > 1e-3}")
assert gap > 1e-3
try:
    models.load_cifar_state_dict(
        after_net, split_net.state_dict(), pad="split"
    )
except models.ArchitectureMismatchError as error:
    print(f"{type(error).__name__}: {error}")

# %% [markdown]
# `build_model` gives all of these by name:

# %%
# NBVAL_CHECK_OUTPUT
print(models.MODEL_NAMES)
plain56 = build_model("plain56")
print(type(plain56).__name__, count_parameters(plain56))

# %% [markdown]
# ## A model summary
#
# `feature_map_shapes` runs one input through a model with a forward hook on each
# top-level module and records its output shape; `macs_by_module` splits the
# MAC count the same way. With a parameter count per module they make a
# compact summary. ResNet-50 at 224x224:


# %%
# NBVAL_CHECK_OUTPUT
def summary(model: nn.Module, input_size: tuple[int, ...]) -> Markdown:
    """Output shape, parameters and MACs of each top-level module."""
    macs = macs_by_module(model, input_size)
    rows = [
        [
            name,
            "x".join(str(s) for s in shape[1:]),
            f"{count_parameters(getattr(model, name)):,}",
            f"{macs[name] / 1e6:,.1f}",
        ]
        for name, shape in feature_map_shapes(model, input_size)
    ]
    total = f"**{count_macs(model, input_size) / 1e6:,.1f}**"
    rows.append(["**total**", "", f"**{count_parameters(model):,}**", total])
    header = ["module", "output (C x H x W)", "parameters", "MMACs"]
    return markdown_table(header, rows)


display(summary(models.resnet50(), (1, 3, imagenet_size, imagenet_size)))

# %% [markdown]
# and the paper's ResNet-20 at 32x32:

# %%
# NBVAL_CHECK_OUTPUT
display(summary(cifar_resnet(20), (1, 3, cifar_size, cifar_size)))

# %%
# NBVAL_CHECK_OUTPUT
r50 = models.resnet50()
share = count_parameters(r50.layer4) / count_parameters(r50)
r50_macs = macs_by_module(r50, (1, 3, imagenet_size, imagenet_size))
per_block = [
    r50_macs[f"layer{i}"] / 1e9 / len(getattr(r50, f"layer{i}"))
    for i in range(1, 5)
]
display(
    Markdown(
        f"The last stage holds {share:.0%} of ResNet-50's parameters but "
        f"each stage halves the map side while it doubles the width, so a "
        f"block costs about the same everywhere: "
        f"{', '.join(f'{g:.2f}' for g in per_block)} GMACs per block in "
        f"`layer1` to `layer4` (the first block of a stage, with its "
        f"projection, a little more). Compute follows the number of blocks "
        f"per stage."
    )
)

# %% [markdown]
# ## Why the ImageNet stem is wrong for 32x32 images
#
# The ImageNet stem divides the input side by 4 before the first stage, and
# stages 2-4 divide it by 8 more: 224x224 becomes 7x7 at `layer4`. A CIFAR
# image is 7 times smaller. We pass one 32x32 image through three networks:
# ResNet-18 with the ImageNet stem, ResNet-18 with the CIFAR stem (one 3x3
# stride-1 convolution, no max pool: `resnet18(stem="cifar")`) and the paper's
# ResNet-20.

# %%
# NBVAL_CHECK_OUTPUT
small = (1, 3, cifar_size, cifar_size)
contenders = {
    "ResNet-18, ImageNet stem": models.resnet18(num_classes=10),
    "ResNet-18, CIFAR stem": models.resnet18(num_classes=10, stem="cifar"),
    "ResNet-20 (paper, CIFAR)": cifar_resnet(20),
}
STAGES = ["input", "stem", "layer1", "layer2", "layer3", "layer4"]
sides: dict[str, dict[str, int]] = {}
for label, model in contenders.items():
    shapes = dict(feature_map_shapes(model, small))
    stem_out = shapes["maxpool"] if "maxpool" in shapes else shapes["relu"]
    sides[label] = {"input": cifar_size, "stem": stem_out[-1]}
    sides[label] |= {s: shapes[s][-1] for s in STAGES[2:] if s in shapes}


def side(label: str, stage: str) -> str:
    """'HxW' of a stage's output for one contender, '-' if it has none."""
    n = sides[label].get(stage)
    return "-" if n is None else f"{n}x{n}"


display(
    markdown_table(
        ["model", *STAGES, "MMACs"],
        [
            [label, *(side(label, s) for s in STAGES)]
            + [f"{count_macs(model, small) / 1e6:.0f}"]
            for label, model in contenders.items()
        ],
    )
)

# %% [markdown]
# {numref}`fig-stem-sizes` draws the three networks from the models, on the
# same 32x32 input.

# %% mystnb={"figure": {"caption": "ResNet-18 with the ImageNet stem (top), ResNet-18 with the CIFAR stem (middle) and the paper's ResNet-20 (bottom) on one 32x32 input, read from the models. The ImageNet stem leaves ResNet-18's last stage a single pixel; the CIFAR stem and ResNet-20 keep spatial detail to the end.", "name": "fig-stem-sizes"}, "image": {"alt": "Three rows of boxes. With the ImageNet stem the 32x32 input becomes 8x8 after the stem and 8x8, 4x4, 2x2 and 1x1 after layer1 to layer4. With the CIFAR stem it stays 32x32 after the stem and becomes 32x32, 16x16, 8x8 and 4x4. ResNet-20 goes 32x32, 32x32, 16x16, 8x8."}}
fig = draw_layouts(
    [(label, model, small) for label, model in contenders.items()]
)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
imagenet_last = sides["ResNet-18, ImageNet stem"]["layer4"]
imagenet_stem = sides["ResNet-18, ImageNet stem"]["stem"]
cifar_last = sides["ResNet-18, CIFAR stem"]["layer4"]
paper_last = sides["ResNet-20 (paper, CIFAR)"]["layer3"]
macs = {label: count_macs(model, small) for label, model in contenders.items()}
cifar_stem_macs = macs["ResNet-18, CIFAR stem"]
display(
    Markdown(
        f"With the ImageNet stem, the 32x32 image is already "
        f"{imagenet_stem}x{imagenet_stem} when the first stage starts and "
        f"{imagenet_last}x{imagenet_last} in `layer4`: the last stage's 3x3 "
        f"convolutions see one pixel padded with zeros, and global average "
        f"pooling has nothing left to average. The CIFAR stem keeps "
        f"{cifar_last}x{cifar_last} maps in `layer4`, and the paper's "
        f"ResNet-20 {paper_last}x{paper_last} in its last stage. The price of "
        f"the CIFAR stem on ResNet-18 is compute: "
        f"{cifar_stem_macs / macs['ResNet-18, ImageNet stem']:.0f}x the "
        f"ImageNet-stem MACs, and "
        f"{cifar_stem_macs / macs['ResNet-20 (paper, CIFAR)']:.0f}x those of "
        f"ResNet-20, a difference that decides what a CPU can train in "
        f"minutes."
    )
)

# %% [markdown]
# ## Bad input fails early
#
# A CIFAR ResNet needs $6n + 2$ layers, so a "CIFAR ResNet-18" does not exist.
# Asking for it fails when the model is built, with a message saying what would
# work; so do unknown names and stems:

# %%
# NBVAL_CHECK_OUTPUT
for bad in (lambda: cifar_resnet(18), lambda: build_model("resnet19"),
            lambda: models.resnet18(stem="tiny")):  # fmt: skip
    try:
        bad()
    except ValueError as error:
        print(f"{type(error).__name__}: {error}\n")

# %% [markdown]
# ## Summary
#
# * A ResNet is a stem, four stages of residual blocks and a classifier; the
#   members of the ImageNet family differ only in the block (basic or
#   bottleneck) and the number of blocks per stage.
# * Only the first block of a stage changes the shape, so only it needs a
#   projection shortcut; `_make_layer` builds the stage.
# * Our models are torchvision's: same names, same shapes, same outputs, and
#   torchvision's weights load into them.
# * Computed parameter and MAC counts match the paper once the stride sits
#   where the paper puts it; torchvision's placement costs a little more compute.
# * Shortcut A's zero channels go after the identity in the paper's code and
#   half before, half after in most PyTorch code: same weights, different
#   networks; `cifar_resnet(..., pad=...)` builds either, and
#   `load_cifar_state_dict` refuses to mix them.
# * The paper's CIFAR ResNets are small (0.27M to 1.7M parameters) and their
#   plain twins have the same counts.
# * The ImageNet stem shrinks a 32x32 image to a single pixel by the last
#   stage; on CIFAR use a CIFAR stem or the paper's CIFAR ResNets.
#
# ## Exercises
#
# 1. Count by hand the multiply-accumulates of ResNet-18's `layer1` at
#    224x224 (four 3x3 convolutions, 64 to 64 channels, on 56x56 maps).
#    Check your answer with `macs_by_module(models.resnet18())["layer1"]`.
# 2. The paper also trains a 1202-layer CIFAR ResNet (19.4M parameters,
#    {cite}`he2016deep`). What is $n$? Build it and count its parameters.
# 3. What is the smallest input side for which ResNet-18 with the ImageNet stem
#    still has a 2x2 map in `layer4`? Confirm it with `feature_map_shapes`.
# 4. Build ResNet-34 from `PreActBlock` (`ResNet(PreActBlock, [3, 4, 6, 3])`,
#    the pre-activation design of {cite}`he2016identity`). Which parameters does
#    it have that ResNet-34 has not, and why does it need them?
# 5. Double every width of `cifar_resnet(20)` (32/64/128 channels). Predict the
#    factor by which parameters and MACs grow, then check.
#
# ## Provenance

# %%
record = provenance(
    params={
        "seed": seed,
        "imagenet_size": imagenet_size,
        "compare_size": compare_size,
        "cifar_size": cifar_size,
    },
    started=started,
    data_source=None,
)
