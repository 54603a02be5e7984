"""resnet_nb.checks: the residual check passes on the library's blocks and fails on
wrong ones (it must be able to fail, or it proves nothing)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet_nb import models
from resnet_nb.checks import block_design, check_residual, residual_parts
from resnet_nb.errors import ParameterError


def _randomise(module: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.normal_(0, 0.5, generator=g)
            m.running_mean.normal_(0, 0.5, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)
    return module


class BnBeforeConv(models.BasicBlock):
    """The common tutorial mistake: BN -> ReLU -> conv, then a ReLU after the sum."""

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return F.relu(out + x)


X = torch.randn(2, 16, 8, 8)


@pytest.mark.parametrize(
    "block",
    [
        models.BasicBlock(16, 16),
        models.BasicBlock(
            16, 32, 2, nn.Sequential(models.conv1x1(16, 32, 2), nn.BatchNorm2d(32))
        ),
        models.Bottleneck(16, 4),
        models.PreActBlock(16, 16),
        models.PreActBlock(16, 32, 2, nn.Sequential(models.conv1x1(16, 32, 2))),
        models.CifarBlock(16, 32, 2, shortcut="A"),
        models.CifarBlock(16, 32, 2, shortcut="A", pad="split"),
        models.CifarBlock(16, 32, 2, shortcut="B"),
    ],
    ids=["basic", "basic-proj", "bottleneck", "preact", "preact-proj", "A", "A-split", "B"],
)
def test_library_blocks_pass(block: nn.Module) -> None:
    result = check_residual(_randomise(block), X)
    assert result.passed, result


def test_bn_before_conv_fails() -> None:
    result = check_residual(_randomise(BnBeforeConv(16, 16)), X)
    assert not result.passed and result.max_error > 1e-2


def test_dropped_shortcut_fails() -> None:
    plain = _randomise(models.CifarBlock(16, 16, plain=True))
    result = check_residual(plain, X, design="basic")
    assert not result.passed and result.max_error > 1e-2


def test_preact_checked_as_basic_fails() -> None:
    """A pre-activation block is not a basic block: the design matters."""
    result = check_residual(_randomise(models.PreActBlock(16, 16)), X, design="basic")
    assert not result.passed


def test_branch_is_not_the_block() -> None:
    block = _randomise(models.BasicBlock(16, 16)).eval()
    f, s = residual_parts(block, X, "basic")
    assert torch.equal(s, X)
    assert not torch.allclose(f, block(X))


def test_training_flag_restored() -> None:
    block = models.BasicBlock(16, 16).train()
    check_residual(block, X)
    assert block.training


def test_unknown_design() -> None:
    with pytest.raises(ParameterError, match="design"):
        block_design(nn.Conv2d(3, 3, 1))
    with pytest.raises(ParameterError, match="design"):
        check_residual(models.BasicBlock(16, 16), X, design="wide")
