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
# (chapter-residual-block)=
# # The residual block
#
# A residual network is a stack of small blocks, each of which adds
# its input back to what it computes.
# In this chapter you build that block from scratch, one piece at a time:
#
# 1. a plain block of two 3x3 convolutions;
# 2. batch normalization in the right place (conv -> BN -> ReLU);
# 3. the identity shortcut, which turns the plain block into a residual one;
# 4. the two ways of matching shapes when a block changes width or resolution:
#    the projection shortcut (option B) and the zero-padding shortcut (option A);
# 5. the bottleneck block used by ResNet-50 and deeper;
# 6. the pre-activation block of {cite}`he2016identity`.
#
# Every step checks its tensor shapes.
# Each teaching version is then compared with the block that
# `resnet_nb.models` provides: same weights in, same numbers out.
# On the way we write down the math of why the shortcut helps, and we end
# with a live experiment: gradient norms, layer by layer, in a deep plain
# network and a residual network of the same depth, at initialization.

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
import torch.nn.functional as F
from IPython.display import Code, Markdown, display
from torch import Tensor, nn

import resnet_nb.models as models
from resnet_nb.checks import check_residual, residual_parts
from resnet_nb.diagrams import draw_blocks
from resnet_nb.params import ParameterError, check_positive_int
from resnet_nb.report import provenance
from resnet_nb.viz import use_book_style

use_book_style()  # readable fonts; figures as SVG

# %% tags=["parameters"]
seed = 0  # seeds weights and the random batch
depth = 56  # depth of the plain and residual nets in the experiment (6n + 2)
batch_size = 64  # images in the batch used to measure gradients

# %%
check_positive_int("batch_size", batch_size)
check_positive_int("depth", depth)
if (depth - 2) % 6 != 0 or depth < 8:
    raise ParameterError(
        f"parameter depth={depth!r} is invalid: the paper's CIFAR nets have "
        "depth = 6n + 2 with n >= 1, e.g. 20, 32, 44, 56 or 110"
    )
if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
    raise ParameterError(
        f"parameter seed={seed!r} is invalid: use an int >= 0, e.g. 0"
    )
torch.manual_seed(seed)

# %% [markdown]
# ## A plain block of two convolutions
#
# The building unit of ResNet on CIFAR and of ResNet-18/34 is two 3x3
# convolutions.
# Padding 1 keeps the height and width; the number of output channels
# is a free choice.
# Between the convolutions sits a ReLU,
#
# $$\operatorname{ReLU}(x) = \max(0, x),$$
#
# applied element by element: negative values become 0, the rest pass
# unchanged.
# It is *not* the absolute value $|x|$: $-2$ becomes $0$, not $2$.

# %%
x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0])
print("x      ", x)
print("ReLU(x)", F.relu(x))
print("|x|    ", x.abs())
assert torch.equal(F.relu(x), torch.maximum(x, torch.zeros_like(x)))
assert not torch.equal(F.relu(x), x.abs())


# %% [markdown]
# Two helpers build the convolutions we need.
# They have no bias; the next section shows why.


# %%
def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias."""
    return nn.Conv2d(
        in_planes, out_planes, 3, stride=stride, padding=1, bias=False
    )


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias."""
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class PlainPair(nn.Module):
    """conv3x3 -> ReLU -> conv3x3 -> ReLU, no normalization, no shortcut."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(planes, planes)
        self.conv2 = conv3x3(planes, planes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.conv1(x))
        return F.relu(self.conv2(out))


# %% [markdown]
# A batch of 8 feature maps with 64 channels of size 56x56 (the size of the
# first stage of ResNet-18) goes through unchanged in shape:

# %%
# NBVAL_CHECK_OUTPUT
x = torch.randn(8, 64, 56, 56)
block = PlainPair(64)
out = block(x)
print("input ", tuple(x.shape))
print("output", tuple(out.shape))
assert out.shape == x.shape

# %% [markdown]
# ## Batch normalization after each convolution
#
# ResNet puts batch normalization (BN) {cite}`ioffe2015batch` "right after
# each convolution and before activation" {cite}`he2016deep`:
#
# $$\text{conv} \rightarrow \text{BN} \rightarrow \text{ReLU}.$$
#
# BN normalizes each channel over the batch and the spatial positions
# to mean 0 and variance 1, then applies a learned scale $\gamma$ and
# shift $\beta$:
#
# $$\operatorname{BN}(z) = \gamma \, \frac{z - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta.$$
#
# The order matters. BN goes *after* its convolution, not before it: it
# normalizes what the convolution produced, right before the nonlinearity.
# And because BN subtracts the channel mean $\mu$, a constant bias added by
# the convolution is removed again; $\beta$ takes over its role.
# So the convolution carries no bias (`bias=False`).
# We can check that claim: a convolution with a bias and one without,
# with the same weights, give the same output after BN.
# The check runs in float64: the claim is exact, and in float32 the two
# paths round differently (by about $10^{-5}$, depending on the CPU's
# summation order), which would blur what we want to see.

# %%
with_bias = nn.Conv2d(64, 64, 3, padding=1, bias=True).double()
without_bias = conv3x3(64, 64).double()
without_bias.weight.data.copy_(with_bias.weight.data)
nn.init.normal_(with_bias.bias)
bn = nn.BatchNorm2d(64).double()
x64 = x.double()
torch.testing.assert_close(bn(with_bias(x64)), bn(without_bias(x64)))
largest = with_bias.bias.abs().max().item()
print(f"max |bias| that BN removed: {largest:.2f}")


# %% [markdown]
# The plain block with BN:


# %%
class PlainBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN -> ReLU, no shortcut."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out)


# %%
# NBVAL_CHECK_OUTPUT
block = PlainBlock(64)
out = block(x)
print("input ", tuple(x.shape))
print("output", tuple(out.shape))
assert out.shape == x.shape

# %% [markdown]
# ## The identity shortcut
#
# Call $H(x)$ the mapping a block should compute.
# A plain block has to learn $H$ directly.
# A residual block instead computes
#
# $$H(x) = F(x) + x,$$
#
# where the two convolutions (with their BNs and the ReLU between them)
# compute $F$, and the input $x$ is carried around them by a *shortcut*
# and added back. {cite}`he2016deep`
# The **residual** is
#
# $$F(x) = H(x) - x,$$
#
# which is what the stacked layers learn. It is *not* the block's output:
# the output is $H(x)$, the residual plus the input.
# If the best thing a block can do is pass its input on, it only has to
# drive $F$ to zero, which is easy; a plain block would have to learn the
# identity through two convolutions and ReLUs.
#
# In the original block a final ReLU follows the addition:
# the output is $\operatorname{ReLU}(F(x) + x)$.
# We keep torchvision's style: `identity = x`, compute `out`,
# then `out += identity`.


# %%
class TeachingBasicBlock(nn.Module):
    """Residual block: two 3x3 convs with BN, plus a shortcut.

    ``downsample`` maps the input to the output's shape when they differ
    (stride 2 or a change of width); ``None`` means the identity shortcut.
    """

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def residual(self, x: Tensor) -> Tensor:
        """F(x): the two convolutions, without the shortcut."""
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.residual(x)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


# %% [markdown]
# With the identity shortcut, input and output must have the same shape.

# %%
# NBVAL_CHECK_OUTPUT
block = TeachingBasicBlock(64, 64)
out = block(x)
print("input   ", tuple(x.shape))
print("F(x)    ", tuple(block.residual(x).shape))
print("output  ", tuple(out.shape))
assert out.shape == x.shape

# %% [markdown]
# {numref}`fig-plain-vs-residual` draws the plain block and the residual
# block side by side. Neither picture is drawn by hand:
# `resnet_nb.diagrams.draw_blocks` traces each module's `forward` and
# draws the operations in the order they run, with whatever the code adds
# back beside them.

# %% mystnb={"figure": {"caption": "The plain block (left) and the residual block (right), drawn from the two modules' forward passes. The residual block adds its input back before the last ReLU.", "name": "fig-plain-vs-residual"}, "image": {"alt": "Two flow diagrams. Left, the plain block: input, 3x3 conv, BN, ReLU, 3x3 conv, BN, ReLU, output, and no shortcut. Right, the residual block: the same layers, but the input also runs along a shortcut on the right into an addition before the final ReLU."}}
fig = draw_blocks(
    [
        ("plain block", PlainBlock(64)),
        ("residual block", TeachingBasicBlock(64, 64)),
    ]
)
plt.show()

# %% [markdown]
# Now the definition itself. A check such as
# "$(F(x) + x) - x = F(x)$" would hold for any $F$ and prove nothing.
# The check below builds $F(x)$ from the block's *own layers*, wired as
# the design prescribes (conv -> BN -> ReLU -> conv -> BN), and the
# shortcut $S(x)$ likewise, and compares $\operatorname{ReLU}(F(x) + S(x))$
# with what the block's `forward` returns: before the final ReLU,
# `block(x) - shortcut(x)` must be $F(x)$.
# It lives in the package as `resnet_nb.checks.check_residual`.
# A check is only worth something if a wrong block fails it, so we run it
# on four blocks: the library's `BasicBlock`, the residual block we just
# wrote, the common tutorial mistake of putting BN *in front of* each
# convolution, and the plain block, whose shortcut is missing.


# %%
class BNBeforeConv(TeachingBasicBlock):
    """A wrong block: BN -> ReLU -> conv, twice, then the shortcut."""

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        return self.relu(out + x)


# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(seed)
candidates = {
    "models.BasicBlock": models.BasicBlock(64, 64),
    "TeachingBasicBlock": TeachingBasicBlock(64, 64),
    "BN before each conv": BNBeforeConv(64, 64),
    "PlainBlock (no shortcut)": PlainBlock(64),
}
print(f"{'block':<26}{'check':<8}")
verdicts = {}
for label, candidate in candidates.items():
    for m in candidate.modules():  # random BN, so that no mistake hides
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, std=0.5)
    result = check_residual(candidate, x, design="basic")
    verdicts[label] = result.passed
    print(f"{label:<26}{'passed' if result.passed else 'FAILED':<8}")
assert verdicts == {
    "models.BasicBlock": True,
    "TeachingBasicBlock": True,
    "BN before each conv": False,
    "PlainBlock (no shortcut)": False,
}

# %% [markdown]
# ## Comparing with the library block
#
# `resnet_nb.models.BasicBlock` is the block the rest of the book uses
# (its state-dict names follow torchvision).
# To compare two implementations we load the teaching block's weights into
# the library block, and run both in training mode (BN uses batch
# statistics) and in evaluation mode (BN uses running statistics).
# Fresh BN layers have $\gamma = 1$, $\beta = 0$, mean 0 and variance 1,
# which would hide mistakes, so we first give them random values.


# %%
def randomize_bn(module: nn.Module) -> nn.Module:
    """Give every BN layer random affine parameters and running statistics."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, std=0.5)
            nn.init.normal_(m.running_mean, std=0.5)
            nn.init.uniform_(m.running_var, 0.5, 1.5)
    return module


def assert_same_outputs(
    teaching: nn.Module, library: nn.Module, x: Tensor
) -> None:
    """Copy ``teaching``'s weights into ``library``; check both agree."""
    randomize_bn(teaching)
    # strict: the same names and shapes, or an error
    library.load_state_dict(teaching.state_dict())
    for train in (False, True):
        teaching.train(train)
        library.train(train)
        with torch.no_grad():
            torch.testing.assert_close(library(x), teaching(x))
    mode = "train and eval"
    name = type(library).__name__
    print(f"{name}: same outputs as the teaching block ({mode})")


# %% [markdown]
# The library's `BasicBlock`:

# %%
display(Code(inspect.getsource(models.BasicBlock), language="python"))

# %%
torch.manual_seed(seed)
assert_same_outputs(TeachingBasicBlock(64, 64), models.BasicBlock(64, 64), x)


# %% [markdown]
# ## The projection shortcut (option B)
#
# Between stages a ResNet halves the height and width (stride 2 in the
# first convolution) and doubles the channels.
# Then $x$ and $F(x)$ no longer have the same shape and cannot be added.
# The paper offers two fixes {cite}`he2016deep`.
# Option B *projects* the shortcut,
#
# $$H(x) = F(x) + W_s x,$$
#
# with $W_s$ a 1x1 convolution of stride 2 followed by BN.
# This is what torchvision's ResNets and ours use for ImageNet.

# %%
# NBVAL_CHECK_OUTPUT
projection = nn.Sequential(conv1x1(64, 128, stride=2), nn.BatchNorm2d(128))
block = TeachingBasicBlock(64, 128, stride=2, downsample=projection)
out = block(x)
print("input          ", tuple(x.shape))
print("F(x)           ", tuple(block.residual(x).shape))
print("shortcut W_s x ", tuple(projection(x).shape))
print("output         ", tuple(out.shape))
assert out.shape == (8, 128, 28, 28)

# %% [markdown]
# The library block takes the same `downsample` module;
# `ResNet._make_layer` builds it whenever the stride or the width changes.

# %%
torch.manual_seed(seed)
assert_same_outputs(
    TeachingBasicBlock(
        64,
        128,
        stride=2,
        downsample=nn.Sequential(
            conv1x1(64, 128, stride=2), nn.BatchNorm2d(128)
        ),
    ),
    models.BasicBlock(
        64,
        128,
        stride=2,
        downsample=nn.Sequential(
            models.conv1x1(64, 128, 2), nn.BatchNorm2d(128)
        ),
    ),
    x,
)


# %% [markdown]
# ## The zero-padding shortcut (option A)
#
# Option A needs no parameters. The shortcut
#
# 1. subsamples $x$ with stride 2, keeping every other row and column
#    (what a 1x1 convolution of stride 2 with identity weights would do), and
# 2. pads the new channels with zeros.
#
# The paper's CIFAR ResNets use option A for all their shortcuts
# {cite}`he2016deep`, so a CIFAR ResNet has exactly as many parameters as
# the plain net of the same depth.
# The CIFAR nets have 16, 32 and 64 channels in their three stages;
# here is the step from the first stage to the second, on 32x32 inputs.
# We append the zero channels after the existing ones; where they go
# does not matter to the network, which learns its weights around them.


# %%
class ZeroPadShortcut(nn.Module):
    """Option A: subsample by ``stride``, then append zero channels."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.extra = out_planes - in_planes
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        # F.pad pads the last dimensions first: (W, W, H, H, C, C)
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))


# %%
# NBVAL_CHECK_OUTPUT
x_cifar = torch.randn(8, 16, 32, 32)
shortcut = ZeroPadShortcut(16, 32, stride=2)
s = shortcut(x_cifar)
print("input    ", tuple(x_cifar.shape))
print("shortcut ", tuple(s.shape))
assert s.shape == (8, 32, 16, 16)
assert torch.equal(s[:, :16], x_cifar[:, :, ::2, ::2])
assert not s[:, 16:].any()
print(
    "parameters in the shortcut:",
    sum(p.numel() for p in shortcut.parameters()),
)

# %%
# NBVAL_CHECK_OUTPUT
block_a = TeachingBasicBlock(16, 32, stride=2, downsample=shortcut)
out = block_a(x_cifar)
print("output", tuple(out.shape))
assert out.shape == (8, 32, 16, 16)

# %% [markdown]
# The paper's CIFAR nets are built from `resnet_nb.models.CifarBlock`,
# a basic block whose `shortcut` argument picks option `"A"` or `"B"`
# (and whose `plain=True` drops the shortcut, for the plain nets of the
# experiment below). Its zero-padding shortcut is `ZeroPadShortcut`:

# %%
display(Code(inspect.getsource(models.ZeroPadShortcut), language="python"))
display(Code(inspect.getsource(models.CifarBlock), language="python"))

# %% [markdown]
# Option A has no parameters, so only the two convolutions and BNs are
# copied; option B's projection is copied with them.

# %%
torch.manual_seed(seed)
assert_same_outputs(
    block_a, models.CifarBlock(16, 32, 2, shortcut="A"), x_cifar
)
block_b = TeachingBasicBlock(
    16,
    32,
    stride=2,
    downsample=nn.Sequential(conv1x1(16, 32, stride=2), nn.BatchNorm2d(32)),
)
assert_same_outputs(
    block_b, models.CifarBlock(16, 32, 2, shortcut="B"), x_cifar
)

# %%
# NBVAL_CHECK_OUTPUT
for name in ("A", "B"):
    lib_block = models.CifarBlock(16, 32, 2, shortcut=name)
    print(f"CifarBlock(16, 32, stride=2, shortcut={name!r}):", end=" ")
    print(f"{models.count_parameters(lib_block):,} parameters")

# %% [markdown]
# {numref}`fig-shortcut-a-b` draws the two library blocks from their code.
# The main path is the same; only the shortcut differs.

# %% mystnb={"figure": {"caption": "A CIFAR block that halves the resolution and doubles the width (16 to 32 channels), with shortcut A (left: subsample, then zero channels, no parameters) and shortcut B (right: a strided 1x1 convolution and BN).", "name": "fig-shortcut-a-b"}, "image": {"alt": "Two flow diagrams with the same main path: 3x3 conv with 32 channels and stride 2, BN, ReLU, 3x3 conv, BN, addition, ReLU. Left, the shortcut subsamples by 2 and pads 16 to 32 channels with zeros. Right, the shortcut is a 1x1 convolution with stride 2 followed by BN."}}
fig = draw_blocks(
    [
        ("shortcut A", models.CifarBlock(16, 32, 2, shortcut="A")),
        ("shortcut B", models.CifarBlock(16, 32, 2, shortcut="B")),
    ]
)
plt.show()


# %% [markdown]
# ## The bottleneck block
#
# ResNet-50, -101 and -152 replace the two 3x3 convolutions with three
# convolutions {cite}`he2016deep`: a 1x1 that *reduces* the channels,
# a 3x3 that works on the reduced width, and a 1x1 that *expands* them
# again, by a factor of 4 (the block's `expansion`).
# A block of width `planes = 64` takes and returns 256 channels but
# runs its 3x3 convolution on 64.


# %%
class TeachingBottleneck(nn.Module):
    """Bottleneck: 1x1 reduce -> 3x3 -> 1x1 expand (x4), plus a shortcut."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


# %% [markdown]
# The stride sits on the 3x3 convolution, as in torchvision
# (the original paper put it on the first 1x1).
# Shapes through a bottleneck that keeps the resolution, and one that
# halves it and projects its shortcut:

# %%
# NBVAL_CHECK_OUTPUT
x256 = torch.randn(2, 256, 56, 56)
bottleneck = TeachingBottleneck(256, 64)
z = x256
for name in ("conv1", "conv2", "conv3"):
    z = getattr(bottleneck, name)(z)
    print(f"after {name}", tuple(z.shape))
out = bottleneck(x256)
print("output     ", tuple(out.shape))
assert out.shape == x256.shape

down = nn.Sequential(conv1x1(256, 512, stride=2), nn.BatchNorm2d(512))
bottleneck_down = TeachingBottleneck(256, 128, stride=2, downsample=down)
out = bottleneck_down(x256)
print("with stride 2 and projection:", tuple(out.shape))
assert out.shape == (2, 512, 28, 28)


# %% [markdown]
# The point of the bottleneck is cost. The paper compares it with a basic
# block of *similar time complexity* {cite}`he2016deep`: two 3x3
# convolutions at 64 channels, against 1x1 (256 to 64), 3x3 (64) and
# 1x1 (64 to 256). The two cost about the same - parameters, and
# multiply-accumulates (MACs: one multiplication and one addition; the
# unit of the paper's "FLOPs") on a 56x56 map - but the bottleneck takes
# and returns 256 channels, four times as many.
# (A basic block at 256 channels would cost far more; it is not the
# comparison the paper makes.)


# %%
# NBVAL_CHECK_OUTPUT
def n_params(module: nn.Module) -> int:
    """Number of parameters (weights, BN scales and shifts)."""
    return sum(p.numel() for p in module.parameters())


basic_64 = TeachingBasicBlock(64, 64)
pairs = {
    "basic block, 64 -> 64": (basic_64, 64),
    "bottleneck, 256 -> 64 -> 256": (bottleneck, 256),
}
print(f"{'block':<30}{'parameters':>11}{'MACs (56x56)':>14}")
macs = {}
for label, (module, width) in pairs.items():
    macs[label] = models.count_macs(module, (1, width, 56, 56))
    print(f"{label:<30}{n_params(module):>11,}{macs[label] / 1e6:>13.0f}M")
ratio = n_params(bottleneck) / n_params(basic_64)
print(f"bottleneck / basic: {ratio:.2f}x the parameters")
assert 0.8 < ratio < 1.2

# %% [markdown]
# The library's `Bottleneck`, checked with and without a projection:

# %%
display(Code(inspect.getsource(models.Bottleneck), language="python"))

# %%
torch.manual_seed(seed)
assert_same_outputs(bottleneck, models.Bottleneck(256, 64), x256)
assert_same_outputs(
    bottleneck_down,
    models.Bottleneck(
        256,
        128,
        stride=2,
        downsample=nn.Sequential(
            models.conv1x1(256, 512, 2), nn.BatchNorm2d(512)
        ),
    ),
    x256,
)


# %% [markdown]
# ## Why the shortcut helps: the Jacobian of a block
#
# Write a block without its final ReLU as $H(x) = F(x) + x$.
# Its Jacobian, the matrix of partial derivatives of outputs
# with respect to inputs, is
#
# $$\frac{\partial H}{\partial x} = I + \frac{\partial F}{\partial x}.$$
#
# Stack $L$ such blocks, $x_{i+1} = x_i + F_i(x_i)$.
# By the chain rule the gradient of a loss $\mathcal{L}$ at the input is
#
# $$\frac{\partial \mathcal{L}}{\partial x_0}
#   = \frac{\partial \mathcal{L}}{\partial x_L}
#     \prod_{i=L-1}^{0} \left(I + \frac{\partial F_i}{\partial x_i}\right).$$
#
# Multiply the product out and one term is $I$ itself:
# $\partial \mathcal{L} / \partial x_L$ reaches $x_0$ directly, plus the
# terms that go through one or more residual branches.
# In a plain net the product is $\prod_i \partial F_i / \partial x_i$ alone:
# if those Jacobians are small, the product of $L$ of them shrinks
# geometrically (it vanishes); if they are large, it explodes.
# With the shortcut, small Jacobians of the $F_i$ alone cannot make the
# gradient vanish, because the identity path does not pass through them.
#
# Two caveats keep this honest.
# The other terms could in principle cancel the identity, so this is not
# a guarantee, only the removal of the main way gradients die.
# And in the original block a ReLU follows the addition,
# so its Jacobian is $D\,(I + \partial F / \partial x)$, with $D$ a diagonal
# matrix of 0s and 1s (where the ReLU passed its input).
# The pre-activation block below removes that ReLU, and its Jacobian is
# exactly $I + \partial F / \partial x$.
#
# We can check this numerically on a tiny block
# (4 channels of 3x3, so the Jacobian is 36x36),
# in evaluation mode so that BN is a fixed affine map.
# The block's Jacobian comes from autograd through its `forward`;
# $\partial F / \partial x$ from the residual branch alone, built from
# the block's layers (`resnet_nb.checks.residual_parts`). The two are
# computed independently, so a block whose `forward` did something else
# would fail.

# %%
torch.manual_seed(seed)
tiny = randomize_bn(TeachingBasicBlock(4, 4)).eval()
x_tiny = torch.randn(1, 4, 3, 3)
n = x_tiny.numel()


def jacobian(fn, x: Tensor) -> Tensor:
    """Jacobian of fn at x, flattened to an (outputs, inputs) matrix."""
    return torch.autograd.functional.jacobian(fn, x).reshape(n, n)


eye = torch.eye(n)
j_block = jacobian(tiny, x_tiny)  # through forward()
f_tiny, s_tiny = residual_parts(tiny, x_tiny, "basic")  # from the layers
j_f = jacobian(lambda v: residual_parts(tiny, v, "basic")[0], x_tiny)

# the final ReLU: D (I + dF/dx), D = 1 where F(x) + x was positive
mask = (f_tiny + s_tiny > 0).flatten().float()
torch.testing.assert_close(j_block, torch.diag(mask) @ (eye + j_f))
print(f"Jacobian {tuple(j_block.shape)}: dH/dx = D (I + dF/dx) holds")
kept = int(mask.sum())
print(f"{kept} of {n} rows keep the identity, the ReLU zeroes the rest")

# %% [markdown]
# ## Pre-activation
#
# {cite}`he2016identity` moved BN and ReLU *before* each convolution:
#
# $$\text{BN} \rightarrow \text{ReLU} \rightarrow \text{conv}
#   \rightarrow \text{BN} \rightarrow \text{ReLU} \rightarrow \text{conv},$$
#
# and dropped the ReLU after the addition, so the block is exactly
# $x_{l+1} = x_l + F(x_l)$. Unrolled from block $l$ to a deeper block $L$,
#
# $$x_L = x_l + \sum_{i=l}^{L-1} F(x_i),$$
#
# so every block's output is its input plus a sum of residuals,
# and the gradient
#
# $$\frac{\partial \mathcal{L}}{\partial x_l}
#   = \frac{\partial \mathcal{L}}{\partial x_L}
#     \left(I + \frac{\partial}{\partial x_l}\sum_{i=l}^{L-1} F(x_i)\right)$$
#
# always contains $\partial \mathcal{L} / \partial x_L$ unchanged
# {cite}`he2016identity`.
# Here BN normalizes the *input* of each convolution: the second BN still
# sits right after the first convolution, while the first BN normalizes
# the sum arriving on the identity path.
# That is a deliberate redesign of the whole block {cite}`he2016identity`,
# not a licence to put BN in front of the convolutions of the original
# block.
#
# When the shape changes, the projection shortcut is a bare 1x1
# convolution applied to the pre-activated input, after the block's first
# BN and ReLU, as in the authors' code for {cite}`he2016identity`; it needs
# no BN of its own, because the BN in front of it is already there.
# The library does the same: `ResNet(PreActBlock, ...)` gives its
# projection shortcuts a 1x1 convolution and nothing else (checked below).
# Otherwise the shortcut is the raw input $x$.


# %%
class TeachingPreActBlock(nn.Module):
    """Pre-activation block: (BN -> ReLU -> conv) x 2, plus a shortcut."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out += identity
        return out


# %%
# NBVAL_CHECK_OUTPUT
preact = TeachingPreActBlock(64, 64)
out = preact(x)
print("identity shortcut:  ", tuple(x.shape), "->", tuple(out.shape))
assert out.shape == x.shape
preact_down = TeachingPreActBlock(
    64, 128, stride=2, downsample=conv1x1(64, 128, stride=2)
)
out = preact_down(x)
print("projection shortcut:", tuple(x.shape), "->", tuple(out.shape))
assert out.shape == (8, 128, 28, 28)

# %% [markdown]
# {numref}`fig-original-vs-preact` draws an original block and a
# pre-activation block that both halve the resolution, from the code.

# %% mystnb={"figure": {"caption": "The original block (left) and the pre-activation block (right), both going from 64 to 128 channels with stride 2. In the pre-activation block BN and ReLU come before each convolution, the projection reads the pre-activated input, and nothing follows the addition.", "name": "fig-original-vs-preact"}, "image": {"alt": "Two flow diagrams. Left: 3x3 conv stride 2, BN, ReLU, 3x3 conv, BN, addition, ReLU, with a shortcut of a 1x1 conv stride 2 and BN from the input. Right: BN, ReLU, then the path splits; 3x3 conv stride 2, BN, ReLU, 3x3 conv on the main path and a 1x1 conv stride 2 on the shortcut, joined by an addition with nothing after it."}}
fig = draw_blocks(
    [
        (
            "original",
            TeachingBasicBlock(
                64,
                128,
                stride=2,
                downsample=nn.Sequential(
                    conv1x1(64, 128, stride=2), nn.BatchNorm2d(128)
                ),
            ),
        ),
        ("pre-activation", preact_down),
    ]
)
plt.show()

# %% [markdown]
# Without a ReLU after the addition, the Jacobian of a pre-activation block
# with an identity shortcut is exactly $I + \partial F / \partial x$.
# Again $F$ is built from the block's own layers
# (`residual_parts(block, x, "preact")`: BN -> ReLU -> conv -> BN -> ReLU
# -> conv), not from the block's output, so the check could fail:
# for the original block, with its final ReLU, it does, in every row the
# ReLU zeroes.

# %%
# NBVAL_CHECK_OUTPUT
tiny_pre = randomize_bn(TeachingPreActBlock(4, 4)).eval()


def rows_off(block: nn.Module, design: str) -> int:
    """Rows where J(block) differs from I + J(F), F from the block's layers."""
    j_block = jacobian(block, x_tiny)
    j_branch = jacobian(lambda v: residual_parts(block, v, design)[0], x_tiny)
    differs = ~torch.isclose(j_block, eye + j_branch, atol=1e-5, rtol=1e-4)
    return int(differs.any(dim=1).sum())


off_pre = rows_off(tiny_pre, "preact")
off_orig = rows_off(tiny, "basic")
print(f"pre-activation block: {off_pre} of {n} rows differ from I + dF/dx")
print(f"original block:       {off_orig} of {n} rows differ (the ReLU mask)")
assert off_pre == 0 and off_orig == n - int(mask.sum())

# %% [markdown]
# The library's `PreActBlock`:

# %%
display(Code(inspect.getsource(models.PreActBlock), language="python"))

# %%
torch.manual_seed(seed)
assert_same_outputs(preact, models.PreActBlock(64, 64), x)
assert_same_outputs(
    preact_down,
    models.PreActBlock(64, 128, 2, downsample=models.conv1x1(64, 128, 2)),
    x,
)

# %%
# NBVAL_CHECK_OUTPUT
preact_net = models.ResNet(models.PreActBlock, [1, 1, 1, 1], num_classes=10)
print("projection shortcut of ResNet(PreActBlock, ...):")
print(preact_net.layer2[0].downsample)
for lib_block in (models.PreActBlock(64, 64), preact_net.layer2[0]):
    assert check_residual(randomize_bn(lib_block), x).passed


# %% [markdown]
# ## Experiment: gradient norms at initialization, plain vs residual
#
# The paper's CIFAR experiments compare plain nets with ResNets of the same
# depth {cite}`he2016deep`; at 56 layers the plain net trains *worse* than
# the 20-layer one, the ResNet better.
# Here we look at both nets before any training, as the library builds
# them: `cifar_resnet(depth, plain=True)` and `cifar_resnet(depth)`
# (shortcut option A), both with He initialization.
# The two have exactly the same layers and parameters; the only difference
# is the shortcuts.
#
# We push one batch through each net in training mode, backpropagate the
# cross-entropy loss, and record, for each of the `depth` weighted layers
# (convolutions and the final linear layer, in forward order), the norm of
# the gradient of its weight.
# The batch is random: Gaussian images and random labels. At
# initialization the network knows nothing about images yet, so this
# measures the architecture, not the data, and needs no dataset.

# %%
print(f"depth {depth}: {(depth - 2) // 6} blocks per stage")
torch.manual_seed(seed)
images = torch.randn(batch_size, 3, 32, 32)
labels = torch.randint(0, 10, (batch_size,))


def measure(plain: bool) -> tuple[list[float], list[float]]:
    """Weight-gradient norm per weighted layer, activation std per block."""
    torch.manual_seed(seed)
    net = models.cifar_resnet(depth, plain=plain).train()
    stds: list[float] = []
    hooks = [
        m.register_forward_hook(
            lambda mod, inp, out: stds.append(out.std().item())
        )
        for m in net.modules()
        if isinstance(m, models.CifarBlock)
    ]
    loss = F.cross_entropy(net(images), labels)
    loss.backward()
    for hook in hooks:
        hook.remove()
    weighted = [
        m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    assert len(weighted) == depth, "option A adds no weighted layers"
    grads = [m.weight.grad.norm().item() for m in weighted]
    return grads, stds


grads = {}
stds = {}
for name, plain in ((f"plain-{depth}", True), (f"ResNet-{depth}", False)):
    grads[name], stds[name] = measure(plain)

# %% mystnb={"figure": {"caption": "Norm of each weighted layer's weight gradient at initialization, for one batch, in the plain net and the ResNet of the same depth (log scale). Layer 1 is the first convolution, the last layer is the classifier.", "name": "fig-grad-norms"}}
colors = {f"plain-{depth}": "tab:red", f"ResNet-{depth}": "tab:blue"}
fig, ax = plt.subplots(figsize=(7, 3.8))
for name, g in grads.items():
    layer = range(1, len(g) + 1)
    ax.plot(layer, g, marker=".", color=colors[name], label=name)
ax.set_yscale("log")
ax.set_xlabel("layer (input side -> output side)")
ax.set_ylabel("weight-gradient norm")
ax.set_title("Gradient norms at initialization")
ax.grid(True, which="major", alpha=0.3)
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# The summary compares the first convolution with the last one
# (the classifier is left out of the ratio: its gradient has a different
# form, the features times the error of the softmax), and gives the spread,
# the largest over the smallest norm among all convolutions.

# %%
summary = {}
header = ("net", "first conv", "last conv", "first/last", "max/min")
print(f"{header[0]:<12}" + "".join(f"{h:>12}" for h in header[1:]))
for name, g in grads.items():
    convs = g[:-1]
    ratio = convs[0] / convs[-1]
    spread = max(convs) / min(convs)
    summary[name] = (ratio, spread)
    values = (convs[0], convs[-1], ratio, spread)
    print(f"{name:<12}" + "".join(f"{v:>12.3g}" for v in values))

# %%
plain_ratio, plain_spread = summary[f"plain-{depth}"]
res_ratio, res_spread = summary[f"ResNet-{depth}"]


def fmt(value: float) -> str:
    """A number for prose: thousands separators when large, 3 digits else."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def direction(ratio: float) -> str:
    """How the gradient changes from the last convolution back to the first."""
    factor = max(ratio, 1 / ratio)
    per_layer = factor ** (1 / (depth - 2))  # geometric rate over the convs
    verb = "grows" if ratio >= 1 else "shrinks"
    return (
        f"{verb} by a factor of {fmt(factor)} "
        f"(about {per_layer:.3g}x per layer)"
    )


display(
    Markdown(
        f"From the last convolution back to the first, the gradient norm "
        f"of the plain-{depth} net {direction(plain_ratio)}. "
        f"In ResNet-{depth} it {direction(res_ratio)}. "
        f"Across all convolutions the norms span a factor of "
        f"{fmt(plain_spread)} in the plain net and {fmt(res_spread)} "
        "in the ResNet."
    )
)

# %% [markdown]
# Read {numref}`fig-grad-norms` with the Jacobian argument in mind.
# In the plain net the gradient reaching layer $l$ is a product of one
# Jacobian per layer above it, so it changes *geometrically* with depth:
# a straight line on the log scale.
# With BN after every convolution it does not vanish, which is why the
# paper rules out vanishing gradients as the reason its plain nets train
# badly {cite}`he2016deep`; at initialization, BN instead makes each
# block's Jacobian slightly expanding, and the product grows toward the
# input.
# The first layers of the plain net thus get gradients orders of
# magnitude larger than the last ones, and no single learning rate suits
# them all.
# In the ResNet the identity path carries the gradient from the loss to
# every block without passing through the others' Jacobians, and the
# curve is far flatter.
# (Its classifier, the last point, gets a larger gradient than the plain
# net's because its input features are larger; see the forward signal
# below.)
#
# The forward signal tells the same story from the other side.
# Below is the standard deviation of each block's output:
# in the plain net BN resets it at every block; in the ResNet each block
# adds its residual to the identity path, so, as $x_L = x_l + \sum_i F(x_i)$
# says, the variance accumulates with depth
# (the zero-padding shortcuts, which carry only half the channels into
# each wider stage, set it back at the stage boundaries).

# %% mystnb={"figure": {"caption": "Standard deviation of each block's output at initialization, for the same batch.", "name": "fig-activation-std"}}
fig, ax = plt.subplots(figsize=(7, 3.2))
for name, sd in stds.items():
    ax.plot(
        range(1, len(sd) + 1), sd, marker=".", color=colors[name], label=name
    )
ax.set_xlabel("block")
ax.set_ylabel("std of block output")
ax.set_title("Forward signal at initialization")
ax.grid(True, alpha=0.3)
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Summary
#
# * A block's convolutions are followed by BN and then ReLU,
#   $\operatorname{ReLU}(x) = \max(0, x)$; BN comes *after* its
#   convolution, which therefore needs no bias.
# * A residual block computes $H(x) = F(x) + x$. The stacked layers learn
#   the residual $F(x) = H(x) - x$, not the output.
# * When a block halves the resolution and widens the channels, the
#   shortcut must change shape too: a 1x1 convolution of stride 2 with BN
#   (option B), or subsampling plus zero channels, with no parameters
#   (option A, the paper's choice on CIFAR).
# * A check that a block is residual must be able to fail: build $F$ and
#   the shortcut from the block's own layers and compare with its output
#   (`resnet_nb.checks.check_residual`). BN in front of the convolutions,
#   or a missing shortcut, fails it.
# * The bottleneck (1x1 reduce, 3x3, 1x1 expand by 4) costs about what a
#   basic block of a quarter of its width costs, while its input and output
#   are four times wider; it is the block of ResNet-50 and deeper.
# * The Jacobian of a residual block is $I + \partial F / \partial x$, so the
#   gradient through many blocks keeps a direct identity path.
#   Pre-activation blocks (BN -> ReLU -> conv, nothing after the addition)
#   make that path exact: $x_L = x_l + \sum_i F(x_i)$.
# * At initialization the plain net's gradient norms change geometrically
#   from layer to layer ({numref}`fig-grad-norms`), the ResNet's stay in a
#   narrow band.
# * `resnet_nb.models` holds the library versions of every block built
#   here; each gave the same outputs as its teaching version.
#
# ## Exercises
#
# 1. Rerun the chapter with `depth = 20` and `depth = 110`
#    (e.g. with papermill: `-p depth 110`). How do the first/last ratio and
#    the per-layer factor of the plain net change with depth?
# 2. Build a 56-layer plain stack *without* BN from `PlainPair` blocks
#    (with He initialization) and measure its gradient norms. Do they
#    vanish or explode now? What does BN change?
# 3. Build the same nets with `shortcut="B"`. How many weighted layers and
#    how many extra parameters (`models.count_parameters`) do the projections
#    add?
# 4. Stack `TeachingPreActBlock`s into a CIFAR net (add a final BN and ReLU
#    before pooling) and add it to {numref}`fig-grad-norms`.
# 5. Set $\gamma = 0$ in the last BN of every residual branch
#    (`zero_init_residual` in torchvision), as {cite}`goyal2017accurate`
#    do to train large batches. What is each block's Jacobian at
#    initialization, and what happens to the forward signal in
#    {numref}`fig-activation-std`?
# 6. Put BN *before* a convolution with a bias and repeat the check of the
#    BN section. Why does the bias no longer cancel?

# %% [markdown]
# ## Provenance

# %%
provenance(
    params={"seed": seed, "depth": depth, "batch_size": batch_size},
    started=started,
    data_source=None,
)
