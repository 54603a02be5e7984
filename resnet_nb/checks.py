"""Checks that a residual block computes what its name says - and that fail if not.

A residual block should compute ``H(x) = F(x) + S(x)`` (then a ReLU, in the
original design), where ``F`` is its residual branch and ``S`` its shortcut.
Checking ``(F(x) + x) - x == F(x)`` proves nothing: it holds for any ``F``. The
check here computes ``F`` and ``S`` *from the block's own layers*, wired the way
the design prescribes, and compares them with what the block's ``forward``
returns. A block that wires its layers differently (BatchNorm in front of its
convolutions) or that dropped its shortcut gives other numbers and fails.

Three designs are known, by the layer names torchvision and this book use:

``"basic"``
    ``F = bn2(conv2(relu(bn1(conv1(x)))))``, ``S = downsample(x)`` or ``x``,
    output ``relu(F + S)`` (He et al. 2016, *Deep Residual Learning*).
``"bottleneck"``
    as ``"basic"`` with a third 1x1 convolution: ``F = bn3(conv3(relu(bn2(conv2(
    relu(bn1(conv1(x))))))))``.
``"preact"``
    ``a = relu(bn1(x))``, ``F = conv2(relu(bn2(conv1(a))))``,
    ``S = downsample(a)`` or ``x``, output ``F + S`` with no ReLU after the
    addition (He et al. 2016, *Identity Mappings*).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet_nb.errors import ParameterError

__all__ = ["DESIGNS", "ResidualCheck", "block_design", "residual_parts", "check_residual"]

DESIGNS: tuple[str, ...] = ("basic", "bottleneck", "preact")


def block_design(block: nn.Module) -> str:
    """The design of a library block ("basic", "bottleneck" or "preact")."""
    from resnet_nb import models

    if isinstance(block, models.PreActBlock):
        return "preact"
    if isinstance(block, models.Bottleneck):
        return "bottleneck"
    if isinstance(block, (models.BasicBlock, models.CifarBlock)):
        return "basic"
    raise ParameterError(
        f"cannot tell the design of a {type(block).__name__}: pass design= one of "
        f"{', '.join(repr(d) for d in DESIGNS)}"
    )


def residual_parts(block: nn.Module, x: Tensor, design: str) -> tuple[Tensor, Tensor]:
    """``(F(x), S(x))``: the residual branch and the shortcut, from ``block``'s layers."""
    if design not in DESIGNS:
        raise ParameterError(
            f"parameter design={design!r} is invalid: choose one of "
            f"{', '.join(repr(d) for d in DESIGNS)}"
        )
    down = getattr(block, "downsample", None)
    if design == "preact":
        a = F.relu(block.bn1(x))
        f = block.conv2(F.relu(block.bn2(block.conv1(a))))
        return f, (x if down is None else down(a))
    f = F.relu(block.bn1(block.conv1(x)))
    if design == "bottleneck":
        f = F.relu(block.bn2(block.conv2(f)))
        f = block.bn3(block.conv3(f))
    else:
        f = block.bn2(block.conv2(f))
    return f, (x if down is None else down(x))


@dataclass(frozen=True)
class ResidualCheck:
    """The outcome of :func:`check_residual`."""

    passed: bool
    max_error: float
    """Largest |block(x) - expected| over all outputs."""
    design: str

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return f"{verdict} (max |difference| {self.max_error:.2g})"


@torch.no_grad()
def check_residual(
    block: nn.Module,
    x: Tensor,
    *,
    design: str | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
) -> ResidualCheck:
    """Does ``block(x)`` equal ``F(x) + S(x)`` built from the block's own layers?

    ``F`` and ``S`` come from :func:`residual_parts`; the expected output is
    ``relu(F + S)`` for the "basic" and "bottleneck" designs and ``F + S`` for
    "preact". Equivalently: before the final ReLU, ``block(x) - S(x)`` is
    ``F(x)``. ``design`` defaults to that of a library block
    (:func:`block_design`); pass it for any other block. The block runs in
    eval mode (fixed BatchNorm statistics, so both computations see the same
    normalisation); its training flag is restored. Never raises on a wrong
    block: read ``passed``.
    """
    design = design or block_design(block)
    was_training = block.training
    block.eval()
    try:
        f, s = residual_parts(block, x, design)
        expected = f + s if design == "preact" else F.relu(f + s)
        got = block(x.clone())  # a copy: some blocks work in place
    finally:
        block.train(was_training)
    if got.shape != expected.shape:
        return ResidualCheck(False, float("inf"), design)
    error = (got - expected).abs().max().item()
    ok = torch.allclose(got, expected, atol=atol, rtol=rtol)
    return ResidualCheck(bool(ok), error, design)
