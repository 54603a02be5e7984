"""Residual blocks and networks: torchvision-compatible ResNets and the paper's CIFAR ResNets.

Two families live here.

* The ImageNet family of He et al. (2016), *Deep Residual Learning*:
  :class:`ResNet` built from :class:`BasicBlock` (ResNet-18/34) or
  :class:`Bottleneck` (ResNet-50/101/152). Module names, parameter shapes and
  the forward computation follow ``torchvision.models.resnet``, so
  ``ours.load_state_dict(torchvision_model.state_dict())`` works and gives the
  same outputs. ``stem="cifar"`` swaps the 7x7 stride-2 convolution and the max
  pool for a single 3x3 stride-1 convolution, for 32x32 inputs.
* The CIFAR-10 networks of the same paper (section 4.2): :class:`CifarResNet`
  with 16/32/64 channels, three stages of ``n`` :class:`CifarBlock` and
  ``depth = 6n + 2`` layers, with the parameter-free shortcut "A", the
  projection shortcut "B", or no shortcut at all (the paper's plain nets).

:class:`PreActBlock` is the pre-activation block of He et al. (2016),
*Identity Mappings in Deep Residual Networks*.

Helpers: :func:`build_model` (by name, see :data:`MODEL_NAMES`),
:func:`count_parameters`, :func:`count_macs` / :func:`macs_by_module`
(multiply-accumulates, the unit of the paper's "FLOPs"), :func:`count_flops` /
:func:`flops_by_module` (floating-point operations, 2 per multiply-accumulate),
:func:`feature_map_shapes`, and :func:`load_cifar_state_dict` for CIFAR ResNet
checkpoints written by other code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet_nb.errors import ArchitectureMismatchError
from resnet_nb.params import check_choice

__all__ = [
    "conv3x3",
    "conv1x1",
    "BasicBlock",
    "Bottleneck",
    "PreActBlock",
    "ResNet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "ZeroPadShortcut",
    "CifarBlock",
    "CifarResNet",
    "cifar_resnet",
    "MODEL_NAMES",
    "IMAGENET_MODEL_NAMES",
    "build_model",
    "count_parameters",
    "count_macs",
    "macs_by_module",
    "count_flops",
    "flops_by_module",
    "PADS",
    "map_cifar_state_dict",
    "load_cifar_state_dict",
    "feature_map_shapes",
]

STEMS: tuple[str, ...] = ("imagenet", "cifar")
SHORTCUTS: tuple[str, ...] = ("A", "B")
PADS: tuple[str, ...] = ("after", "split")
"""Where shortcut A puts its zero channels: ``"after"`` the identity (the
paper's Torch code) or ``"split"`` half before and half after (most PyTorch
CIFAR ResNets)."""

NormLayer = Callable[[int], nn.Module]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a BatchNorm follows it)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution with no bias (a BatchNorm follows it)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def _init_weights(model: nn.Module) -> None:
    """He initialisation for convolutions, identity affine for BatchNorm.

    Convolutions get ``kaiming_normal_`` with ``mode="fan_out"`` (He et al.,
    2015); BatchNorm weights start at 1 and biases at 0. Linear layers keep
    PyTorch's default initialisation, as in torchvision.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


# --------------------------------------------------------------------------------------
# Blocks of the ImageNet family
# --------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or projection) shortcut.

    ``out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``. The first
    convolution carries the stride; ``downsample`` (a 1x1 convolution and a
    BatchNorm, built by :meth:`ResNet._make_layer`) maps ``x`` to the output
    shape when the stride or the width changes. Used by ResNet-18 and -34.
    """

    expansion: int = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        out += identity
        out = self.relu(out)
        return out


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), with an identity/projection shortcut.

    Used by ResNet-50/101/152. As in torchvision (the "ResNet v1.5" variant),
    the stride sits on the 3x3 convolution; the paper puts it on the first 1x1
    convolution. The parameter count is the same either way; v1.5 is slightly
    more accurate and costs slightly more FLOPs.
    """

    expansion: int = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = norm_layer(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)

        out = self.conv3(out)
        out = self.bn3(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        out += identity
        out = self.relu(out)
        return out


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al., 2016, *Identity Mappings*).

    BatchNorm and ReLU move in front of each convolution and nothing follows
    the addition, so the shortcut path is a pure identity from block to block:
    ``out = conv2(relu(bn2(conv1(relu(bn1(x)))))) + shortcut(x)``. When the
    shape changes, ``downsample`` projects the *pre-activated* input, as in the
    paper; in :class:`ResNet` that projection is a bare 1x1 convolution (no
    BatchNorm after it), as in the authors' code for *Identity Mappings*
    (``fb.resnet.torch``, ``preresnet.lua``): the BatchNorm and ReLU in front
    of it are the block's ``bn1`` and ``relu``. A network of these blocks
    needs a final BatchNorm and ReLU before pooling; :class:`ResNet` adds one
    (``final_norm``) when its block is a ``PreActBlock``.
    """

    expansion: int = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        self.bn1 = norm_layer(inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        # Not in place: ``x`` itself is the identity shortcut.
        out = F.relu(self.bn1(x))
        identity = x
        if self.downsample is not None:
            identity = self.downsample(out)

        out = self.conv1(out)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv2(out)

        out += identity
        return out


Block = Union[type[BasicBlock], type[Bottleneck], type[PreActBlock]]


# --------------------------------------------------------------------------------------
# The ImageNet family
# --------------------------------------------------------------------------------------


class ResNet(nn.Module):
    """ResNet for ImageNet-sized inputs, compatible with ``torchvision.models.ResNet``.

    Stem (``conv1``, ``bn1``, ``relu``, ``maxpool``), four stages
    ``layer1``..``layer4`` of ``layers[i]`` blocks with 64/128/256/512 base
    widths (stages 2-4 halve the spatial size in their first block), global
    average pooling (``avgpool``) and a linear classifier (``fc``).

    Parameters
    ----------
    block:
        :class:`BasicBlock`, :class:`Bottleneck` or :class:`PreActBlock`.
    layers:
        Blocks per stage, four positive integers, e.g. ``[2, 2, 2, 2]``.
    num_classes:
        Outputs of the classifier.
    stem:
        ``"imagenet"``: 7x7 stride-2 convolution and 3x3 stride-2 max pool
        (input downsampled 4x before ``layer1``). ``"cifar"``: one 3x3 stride-1
        convolution and no pooling, for 32x32 inputs; ``maxpool`` is then an
        ``nn.Identity`` and the state_dict differs only in ``conv1.weight``.
    zero_init_residual:
        Start the last BatchNorm of every basic/bottleneck block at zero, so
        each block begins as the identity (Goyal et al., 2017). Ignored for
        :class:`PreActBlock`, whose last layer is a convolution.
    in_channels:
        Channels of the input images (3 for RGB, 1 for grayscale).
    norm_layer:
        Normalisation layer constructor, ``nn.BatchNorm2d`` by default.
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        *,
        num_classes: int = 1000,
        stem: str = "imagenet",
        zero_init_residual: bool = False,
        in_channels: int = 3,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        check_choice("stem", stem, STEMS)
        if len(layers) != 4 or not all(isinstance(n, int) and n > 0 for n in layers):
            raise ValueError(
                f"layers={list(layers)!r} is invalid: give four positive block counts, "
                "e.g. [2, 2, 2, 2] (ResNet-18) or [3, 4, 6, 3] (ResNet-34/50)"
            )
        _check_positive("num_classes", num_classes)
        _check_positive("in_channels", in_channels)
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        self._norm_layer = norm_layer
        self.stem = stem
        self.inplanes = 64

        if stem == "imagenet":
            self.conv1 = nn.Conv2d(
                in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False
            )
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = conv3x3(in_channels, self.inplanes)
            self.maxpool = nn.Identity()
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)

        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        # Pre-activation blocks end on a convolution: normalise before pooling.
        self.final_norm: nn.Module | None = None
        if block is PreActBlock:
            self.final_norm = nn.Sequential(
                norm_layer(512 * block.expansion), nn.ReLU(inplace=True)
            )
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        _init_weights(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(
        self, block: Block, planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        """One stage: ``blocks`` blocks, the first carrying ``stride``.

        The first block gets a projection shortcut (1x1 convolution with
        ``stride``, then BatchNorm) when it changes the spatial size or the
        number of channels; the others map ``planes * expansion`` channels to
        the same and use the identity. For :class:`PreActBlock` the projection
        is the 1x1 convolution alone: it is applied to the block's already
        normalised and activated input, as in He et al. (2016, *Identity
        Mappings*) and their code.
        """
        norm_layer = self._norm_layer
        downsample: nn.Module | None = None
        width = planes * block.expansion
        if stride != 1 or self.inplanes != width:
            projection = conv1x1(self.inplanes, width, stride)
            if block is PreActBlock:
                downsample = nn.Sequential(projection)
            else:
                downsample = nn.Sequential(projection, norm_layer(width))

        stage: list[nn.Module] = [
            block(
                self.inplanes,
                planes,
                stride,
                downsample,
                norm_layer=norm_layer,
            )
        ]
        self.inplanes = width
        for _ in range(1, blocks):
            stage.append(block(self.inplanes, planes, norm_layer=norm_layer))
        return nn.Sequential(*stage)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)

        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        if self.final_norm is not None:
            x = self.final_norm(x)

        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


def _builder(
    name: str, block: type[nn.Module], layers: list[int], doc: str
) -> Callable[..., ResNet]:
    """A torchvision-style keyword-only builder of one ResNet depth."""

    def build(
        *,
        num_classes: int = 1000,
        stem: str = "imagenet",
        zero_init_residual: bool = False,
        in_channels: int = 3,
    ) -> ResNet:
        return ResNet(block, layers, num_classes=num_classes, stem=stem,
                      zero_init_residual=zero_init_residual, in_channels=in_channels)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = doc
    return build


resnet18 = _builder(
    "resnet18", BasicBlock, [2, 2, 2, 2],
    "ResNet-18: basic blocks, [2, 2, 2, 2] per stage (11.7M parameters at 1000 classes).",
)
resnet34 = _builder(
    "resnet34", BasicBlock, [3, 4, 6, 3], "ResNet-34: basic blocks, [3, 4, 6, 3] per stage."
)
resnet50 = _builder(
    "resnet50", Bottleneck, [3, 4, 6, 3],
    "ResNet-50: bottleneck blocks, [3, 4, 6, 3] per stage (25.6M parameters at 1000 "
    "classes).",
)
resnet101 = _builder(
    "resnet101", Bottleneck, [3, 4, 23, 3],
    "ResNet-101: bottleneck blocks, [3, 4, 23, 3] per stage.",
)
resnet152 = _builder(
    "resnet152", Bottleneck, [3, 8, 36, 3],
    "ResNet-152: bottleneck blocks, [3, 8, 36, 3] per stage.",
)


# --------------------------------------------------------------------------------------
# The paper's CIFAR-10 networks (He et al. 2016, section 4.2)
# --------------------------------------------------------------------------------------


class ZeroPadShortcut(nn.Module):
    """Parameter-free shortcut "A": subsample by ``stride``, add zero channels.

    Keeps every ``stride``-th pixel in each spatial direction and adds
    ``out_planes - in_planes`` all-zero channels, so the identity can be added
    to a block output that is smaller and wider. No parameters.

    ``pad="after"`` appends all the zero channels after the identity, as the
    paper's Torch code did; ``pad="split"`` puts half before and half after,
    as most PyTorch CIFAR ResNets do
    (``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))``).
    The two layouts have the same (no) parameters but are different networks:
    weights trained with one give other outputs with the other.
    """

    def __init__(
        self, in_planes: int, out_planes: int, stride: int, pad: str = "after"
    ) -> None:
        super().__init__()
        if out_planes < in_planes:
            raise ValueError(
                "zero-padding cannot reduce channels "
                f"({in_planes} -> {out_planes}); use the projection shortcut "
                "'B'"
            )
        check_choice("pad", pad, PADS)
        self.in_planes = in_planes
        self.out_planes = out_planes
        self.stride = stride
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_planes - self.in_planes
        if extra > 0:
            before = extra // 2 if self.pad == "split" else 0
            # F.pad pads from the last dimension back: (W, W, H, H, C, C).
            x = F.pad(x, [0, 0, 0, 0, before, extra - before])
        return x

    def extra_repr(self) -> str:
        return (
            f"{self.in_planes}, {self.out_planes}, "
            f"stride={self.stride}, pad={self.pad!r}"
        )


class CifarBlock(nn.Module):
    """Basic block of the paper's CIFAR-10 networks.

    Two 3x3 convolutions with BatchNorm; the first carries ``stride``. The
    shortcut is the identity when the shape stays the same; when it changes,
    ``shortcut="A"`` uses :class:`ZeroPadShortcut` (no parameters) and
    ``shortcut="B"`` a 1x1 convolution with BatchNorm; ``pad`` places option
    A's zero channels (see :class:`ZeroPadShortcut`). ``plain=True`` drops the
    shortcut entirely: the block is then just two conv-BN(-ReLU) layers, the
    paper's plain network.
    """

    expansion: int = 1

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        *,
        shortcut: str = "A",
        plain: bool = False,
        pad: str = "after",
    ) -> None:
        super().__init__()
        check_choice("shortcut", shortcut, SHORTCUTS)
        check_choice("pad", pad, PADS)
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.plain = plain
        self.downsample: nn.Module | None = None
        if not plain and (stride != 1 or in_planes != planes):
            if shortcut == "A":
                self.downsample = ZeroPadShortcut(
                    in_planes, planes, stride, pad
                )
            else:
                self.downsample = nn.Sequential(
                    conv1x1(in_planes, planes, stride), nn.BatchNorm2d(planes)
                )

    def forward(self, x: Tensor) -> Tensor:
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)

        if not self.plain:
            if self.downsample is not None:
                identity = self.downsample(x)
            out += identity
        out = self.relu(out)
        return out


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} is invalid: it must be a positive integer")


def _blocks_per_stage(depth: int) -> int:
    """``n`` for a CIFAR network of ``depth = 6n + 2`` layers, or ValueError."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"depth={depth!r} is invalid: a CIFAR ResNet has depth = 6n + 2 with n >= 1, "
            "e.g. 8, 14, 20, 32, 44, 56 or 110"
        )
    return (depth - 2) // 6


class CifarResNet(nn.Module):
    """The CIFAR-10 network of He et al. (2016), section 4.2.

    A 3x3 convolution to 16 channels (``conv1``, ``bn1``, ``relu``), three
    stages ``layer1``..``layer3`` of ``n`` :class:`CifarBlock` with 16, 32 and
    64 channels on 32x32, 16x16 and 8x8 maps, global average pooling and a
    linear classifier: ``6n + 2`` weighted layers in all. Depths 20, 32, 44,
    56 and 110 have 0.27M, 0.46M, 0.66M, 0.85M and 1.7M parameters with
    shortcut "A" (the paper's Table 6).

    Parameters
    ----------
    depth:
        Number of weighted layers, ``6n + 2`` with ``n >= 1``.
    shortcut:
        ``"A"`` (zero-padding, parameter-free, the paper's choice on CIFAR)
        or ``"B"`` (1x1 projection where the shape changes).
    num_classes:
        Outputs of the classifier.
    plain:
        Drop all shortcuts: the paper's plain network of the same depth.
    in_channels:
        Channels of the input images.
    pad:
        Where shortcut A puts its zero channels: ``"after"`` the identity (the
        paper's Torch code, the default) or ``"split"`` half before, half after
        (most PyTorch CIFAR ResNets and their published checkpoints). Stored
        as ``model.pad``, so a built model knows its layout.
    """

    def __init__(
        self,
        depth: int,
        *,
        shortcut: str = "A",
        num_classes: int = 10,
        plain: bool = False,
        in_channels: int = 3,
        pad: str = "after",
    ) -> None:
        super().__init__()
        n = _blocks_per_stage(depth)
        check_choice("shortcut", shortcut, SHORTCUTS)
        check_choice("pad", pad, PADS)
        self.pad = pad
        _check_positive("num_classes", num_classes)
        _check_positive("in_channels", in_channels)
        self.depth = depth
        self.shortcut = shortcut
        self.plain = plain
        self.in_planes = 16

        self.conv1 = conv3x3(in_channels, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(16, n, stride=1)
        self.layer2 = self._make_layer(32, n, stride=2)
        self.layer3 = self._make_layer(64, n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)

        _init_weights(self)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        """One stage of ``blocks`` blocks; the first carries ``stride``."""
        stage: list[nn.Module] = []
        for i in range(blocks):
            stage.append(
                CifarBlock(
                    self.in_planes,
                    planes,
                    stride if i == 0 else 1,
                    shortcut=self.shortcut,
                    plain=self.plain,
                    pad=self.pad,
                )
            )
            self.in_planes = planes
        return nn.Sequential(*stage)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)

        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)

        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


def cifar_resnet(
    depth: int,
    *,
    shortcut: str = "A",
    num_classes: int = 10,
    plain: bool = False,
    in_channels: int = 3,
    pad: str = "after",
) -> CifarResNet:
    """The paper's CIFAR ResNet (``plain=True``: plain net) of ``depth = 6n + 2`` layers.

    ``pad`` ("after" or "split") places shortcut A's zero channels; see
    :class:`CifarResNet`. A bad value raises :class:`~resnet_nb.errors.ParameterError`.
    """
    return CifarResNet(
        depth,
        shortcut=shortcut,
        num_classes=num_classes,
        plain=plain,
        in_channels=in_channels,
        pad=pad,
    )


# --------------------------------------------------------------------------------------
# By name, and measurements
# --------------------------------------------------------------------------------------

_IMAGENET_BUILDERS: dict[str, Callable[..., ResNet]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnet152": resnet152,
}
_CIFAR_DEPTHS: tuple[int, ...] = (20, 32, 44, 56, 110)

IMAGENET_MODEL_NAMES: tuple[str, ...] = tuple(_IMAGENET_BUILDERS)
"""The names of the ImageNet family, the networks that take a ``stem``."""

MODEL_NAMES: tuple[str, ...] = (
    *_IMAGENET_BUILDERS,
    *(f"resnet{d}" for d in _CIFAR_DEPTHS),
    *(f"plain{d}" for d in _CIFAR_DEPTHS),
)
"""Every name :func:`build_model` accepts."""


def build_model(
    name: str,
    *,
    num_classes: int = 10,
    stem: str | None = None,
    in_channels: int = 3,
) -> nn.Module:
    """Build a network by name.

    ``"resnet18"`` .. ``"resnet152"`` give the ImageNet family (:class:`ResNet`,
    ImageNet stem unless ``stem="cifar"``); ``"resnet20"`` .. ``"resnet110"``
    the paper's CIFAR ResNets with shortcut "A"; ``"plain20"`` ..
    ``"plain110"`` the plain nets of the same depths. See :data:`MODEL_NAMES`.
    ``stem`` applies to the ImageNet family only.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model name {name!r}: choose one of {', '.join(MODEL_NAMES)}")
    if name in _IMAGENET_BUILDERS:
        return _IMAGENET_BUILDERS[name](
            num_classes=num_classes, stem=stem or "imagenet", in_channels=in_channels
        )
    if stem is not None:
        raise ValueError(
            f"stem={stem!r} applies only to {', '.join(_IMAGENET_BUILDERS)}; "
            f"{name!r} always has the CIFAR stem (leave stem unset)"
        )
    plain = name.startswith("plain")
    depth = int(name.removeprefix("plain").removeprefix("resnet"))
    return cifar_resnet(depth, num_classes=num_classes, plain=plain, in_channels=in_channels)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (elements) in ``model``; buffers such as BN statistics excluded."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _example_input(model: nn.Module, input_size: Sequence[int]) -> Tensor:
    size = tuple(input_size)
    if not size or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(
            f"input_size={input_size!r} is invalid: give positive integers, "
            "e.g. (1, 3, 224, 224) for one RGB image"
        )
    first = next(model.parameters(), None)
    if first is None:
        return torch.zeros(size)
    return torch.zeros(size, device=first.device, dtype=first.dtype)


def _flop_counts(model: nn.Module, input_size: Sequence[int]) -> tuple[int, dict[str, int]]:
    """Total FLOPs and FLOPs per module path ("Root.layer1.0", ...) of one forward pass."""
    from torch.utils.flop_counter import FlopCounterMode

    x = _example_input(model, input_size)
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    per_module = {name: int(sum(ops.values())) for name, ops in counter.get_flop_counts().items()}
    return int(counter.get_total_flops()), per_module


def count_macs(model: nn.Module, input_size: Sequence[int] = (1, 3, 224, 224)) -> int:
    """Multiply-accumulates (MACs) of one forward pass: the paper's "FLOPs".

    He et al. (2016) count one multiply-add as one "FLOP" (ResNet-18: 1.8e9 at
    224x224); this book calls that unit a multiply-accumulate (MAC) and keeps
    "FLOPs" for floating-point operations, two per MAC (:func:`count_flops`).
    Counted by ``torch.utils.flop_counter.FlopCounterMode`` over convolutions
    and matrix multiplications only; BatchNorm, ReLU, pooling and the residual
    additions are not counted (they are small next to the convolutions).

    The model runs once in eval mode without gradients, on a zero tensor of
    ``input_size`` (batch included); its training flag is restored afterwards.
    """
    total, _ = _flop_counts(model, input_size)
    return total // 2


def macs_by_module(
    model: nn.Module, input_size: Sequence[int] = (1, 3, 224, 224)
) -> dict[str, int]:
    """Multiply-accumulates of each top-level child of ``model``, by name and in order.

    Counted as in :func:`count_macs`. Children without convolutions or matrix
    products (BatchNorm, ReLU, pooling) get 0; for a ResNet the values add up
    to :func:`count_macs`.
    """
    return {name: n // 2 for name, n in flops_by_module(model, input_size).items()}


def count_flops(model: nn.Module, input_size: Sequence[int] = (1, 3, 224, 224)) -> int:
    """Floating-point operations of one forward pass: ``2 * count_macs(model)``.

    PyTorch's ``FlopCounterMode`` counts **2 FLOPs per multiply-accumulate**
    (one multiply, one add), the unit to compare with a processor's FLOP/s.
    The paper's "FLOPs" are multiply-accumulates: compare :func:`count_macs`
    with those (ResNet-18: 1.8e9 MACs, 3.6e9 FLOPs at 224x224). Counted over
    convolutions and matrix multiplications only, as :func:`count_macs`.
    """
    total, _ = _flop_counts(model, input_size)
    return total


def flops_by_module(
    model: nn.Module, input_size: Sequence[int] = (1, 3, 224, 224)
) -> dict[str, int]:
    """Floating-point operations of each top-level child of ``model``, by name and in order.

    Counted as in :func:`count_flops` (2 per multiply-accumulate; halve them,
    or use :func:`macs_by_module`, for MACs). Children without convolutions or
    matrix products (BatchNorm, ReLU, pooling) get 0; for a ResNet the values
    add up to :func:`count_flops`.
    """
    _, per_module = _flop_counts(model, input_size)
    # Paths look like "ResNet.layer1": the root module's class name, then the child's name.
    by_child = {path.partition(".")[2]: n for path, n in per_module.items() if "." in path}
    return {name: by_child.get(name, 0) for name, _ in model.named_children()}


def feature_map_shapes(
    model: nn.Module, input_size: Sequence[int]
) -> list[tuple[str, tuple[int, ...]]]:
    """Output shape of each top-level child of ``model`` for an input of ``input_size``.

    For :class:`ResNet` that is the stem (``conv1``, ``bn1``, ``relu``,
    ``maxpool``), the stages ``layer1``..``layer4``, ``avgpool`` and ``fc``, in
    the order they run. Shapes include the batch dimension. The model runs
    once in eval mode without gradients; its training flag is restored.
    """
    x = _example_input(model, input_size)
    shapes: list[tuple[str, tuple[int, ...]]] = []

    def recorder(name: str) -> Callable[[nn.Module, object, Tensor], None]:
        def hook(module: nn.Module, inputs: object, output: Tensor) -> None:
            shapes.append((name, tuple(output.shape)))

        return hook

    handles = [m.register_forward_hook(recorder(n)) for n, m in model.named_children()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return shapes


# --------------------------------------------------------------------------------------
# CIFAR ResNet checkpoints written by other code
# --------------------------------------------------------------------------------------

# Renamings from popular PyTorch CIFAR ResNets (e.g. akamaster/pytorch_resnet_cifar10,
# kuangliu/pytorch-cifar) to ours: a DataParallel "module." prefix, the classifier
# called "linear", the shortcut branch called "shortcut". Applied in this order;
# anything else must already carry our names.
_THIRD_PARTY_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^module\.", ""),
    (r"^linear\.", "fc."),
    (r"\.shortcut\.", ".downsample."),
)


def map_cifar_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a third-party CIFAR ResNet state dict to :class:`CifarResNet`'s names.

    Strips a ``module.`` prefix (``nn.DataParallel``), renames ``linear.*`` to
    ``fc.*`` and ``*.shortcut.*`` to ``*.downsample.*``; every other key is kept
    as it is. It only renames: :func:`load_cifar_state_dict` checks the result.
    """
    import re

    mapped: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        new = key
        for pattern, repl in _THIRD_PARTY_RENAMES:
            new = re.sub(pattern, repl, new)
        if new in mapped:
            raise ArchitectureMismatchError(
                f"two checkpoint keys map to {new!r} (one of them is {key!r}); "
                "the checkpoint mixes naming schemes"
            )
        mapped[new] = value
    return mapped


def load_cifar_state_dict(
    model: CifarResNet, state_dict: Mapping[str, Tensor], *, pad: str
) -> CifarResNet:
    """Load a CIFAR ResNet checkpoint from other code into ``model``, or fail loudly.

    ``state_dict`` may use the names of popular PyTorch CIFAR ResNets (see
    :func:`map_cifar_state_dict`). ``pad`` is the zero-padding layout of shortcut
    A that the checkpoint was *trained* with - ``"split"`` for most PyTorch
    re-implementations, ``"after"`` for the paper's Torch code. The weights
    cannot tell: both layouts have the same parameter names and shapes, but they
    are different networks. So the caller must say, and ``model.pad`` must agree.

    Raises :class:`~resnet_nb.errors.ArchitectureMismatchError` when the layouts
    disagree, when a key cannot be mapped to one of ``model``'s (naming the
    unmapped keys), when the model has keys the checkpoint lacks, or when a
    shape differs; :class:`~resnet_nb.errors.ParameterError` for a bad ``pad``.
    Returns ``model``.
    """
    check_choice("pad", pad, PADS)
    if not isinstance(model, CifarResNet):
        raise ArchitectureMismatchError(
            f"load_cifar_state_dict loads into a CifarResNet, not {type(model).__name__}; "
            "build one with resnet_nb.models.cifar_resnet(depth, pad=...)"
        )
    if model.pad != pad:
        raise ArchitectureMismatchError(
            f"the checkpoint's shortcut A pads {pad!r} but the model pads {model.pad!r}: "
            f"same parameter names, different network; build the model with "
            f"cifar_resnet({model.depth}, pad={pad!r})"
        )
    mapped = map_cifar_state_dict(state_dict)
    ours = model.state_dict()
    renamed = {new: old for old, new in zip(state_dict, mapped)}
    unmapped = [renamed[k] for k in mapped if k not in ours]
    missing = [k for k in ours if k not in mapped]
    if unmapped or missing:
        parts = []
        if unmapped:
            parts.append(f"checkpoint keys with no counterpart in the model: {unmapped}")
        if missing:
            parts.append(f"model keys the checkpoint lacks: {missing}")
        raise ArchitectureMismatchError(
            f"cannot map the checkpoint onto cifar_resnet({model.depth}, "
            f"shortcut={model.shortcut!r}): " + "; ".join(parts)
        )
    wrong = [
        f"{k}: checkpoint {tuple(v.shape)}, model {tuple(ours[k].shape)}"
        for k, v in mapped.items()
        if tuple(v.shape) != tuple(ours[k].shape)
    ]
    if wrong:
        raise ArchitectureMismatchError(
            f"shapes differ between the checkpoint and cifar_resnet({model.depth}): "
            + "; ".join(wrong)
        )
    model.load_state_dict(mapped, strict=True)
    return model


def weighted_depth(model: nn.Module) -> int:
    """The depth the paper names a network by: its weighted layers on the main path.

    Counts the convolutions and linear layers outside shortcut branches
    (``downsample``): 110 for ``cifar_resnet(110)``, 18 for :func:`resnet18`,
    and the same for a plain network as for its residual twin.
    """
    count = 0
    for name, module in model.named_modules():
        if "downsample" in name.split("."):
            continue
        count += isinstance(module, (nn.Conv2d, nn.Linear))
    return count
