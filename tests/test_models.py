"""Tests for resnet_nb.models: torchvision equivalence, the paper's counts, shapes, errors."""

from __future__ import annotations

import io
import math
import pickle
import warnings

import pytest
import torch
import torchvision
from torch import nn

from resnet_nb import models
from resnet_nb.models import (
    MODEL_NAMES,
    BasicBlock,
    Bottleneck,
    CifarBlock,
    CifarResNet,
    PreActBlock,
    ResNet,
    ZeroPadShortcut,
    build_model,
    cifar_resnet,
    count_flops,
    count_parameters,
    feature_map_shapes,
    flops_by_module,
)

IMAGENET_NAMES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
CIFAR_DEPTHS = [20, 32, 44, 56, 110]
# He et al. (2016), Table 6: parameters of the CIFAR-10 ResNets, as printed.
PAPER_CIFAR_PARAMS = {20: "0.27M", 32: "0.46M", 44: "0.66M", 56: "0.85M", 110: "1.7M"}


def _randomise_bn_statistics(model: nn.Module, generator: torch.Generator) -> None:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.1)


# --------------------------------------------------------------------------------------
# torchvision compatibility
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", IMAGENET_NAMES)
def test_matches_torchvision(name: str) -> None:
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None).eval()
    _randomise_bn_statistics(reference, generator)
    ours = getattr(models, name)().eval()

    theirs_sd, ours_sd = reference.state_dict(), ours.state_dict()
    assert list(ours_sd) == list(theirs_sd)
    assert {k: v.shape for k, v in ours_sd.items()} == {k: v.shape for k, v in theirs_sd.items()}
    ours.load_state_dict(theirs_sd, strict=True)

    x = torch.randn(1, 3, 64, 64, generator=generator)
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    assert actual.shape == (1, 1000)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", IMAGENET_NAMES)
def test_parameter_count_matches_torchvision(name: str) -> None:
    reference = getattr(torchvision.models, name)(weights=None)
    assert count_parameters(getattr(models, name)()) == count_parameters(reference)


@pytest.mark.parametrize(("name", "expected"), [("resnet18", 11_689_512), ("resnet50", 25_557_032)])
def test_parameter_count_exact(name: str, expected: int) -> None:
    assert count_parameters(getattr(models, name)()) == expected


def test_cifar_stem_differs_only_in_conv1() -> None:
    imagenet = models.resnet18().state_dict()
    cifar_model = models.resnet18(stem="cifar")
    cifar = cifar_model.state_dict()
    assert list(cifar) == list(imagenet)
    differing = [k for k in imagenet if imagenet[k].shape != cifar[k].shape]
    assert differing == ["conv1.weight"]
    assert cifar["conv1.weight"].shape == (64, 3, 3, 3)
    assert isinstance(cifar_model.maxpool, nn.Identity)


def test_num_classes_and_in_channels() -> None:
    model = models.resnet18(num_classes=7, in_channels=1).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 64, 64))
    assert out.shape == (2, 7)
    assert model.conv1.weight.shape == (64, 1, 7, 7)


def test_init_follows_torchvision() -> None:
    torch.manual_seed(0)
    model = models.resnet18()
    weight = model.layer4[1].conv2.weight  # fan_out = 512 * 3 * 3
    assert weight.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.05)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_zero_init_residual_makes_blocks_identity(name: str) -> None:
    model = getattr(models, name)(zero_init_residual=True).eval()
    last_bns = [
        m.bn3 if isinstance(m, Bottleneck) else m.bn2
        for m in model.modules()
        if isinstance(m, (BasicBlock, Bottleneck))
    ]
    assert last_bns and all(torch.all(bn.weight == 0) for bn in last_bns)
    # A block without downsampling then passes its (non-negative) input through.
    block = model.layer1[1]
    x = torch.rand(1, block.conv1.in_channels, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x.clone()), x)
    assert not torch.all(models.resnet18().layer1[0].bn2.weight == 0)


# --------------------------------------------------------------------------------------
# Pre-activation
# --------------------------------------------------------------------------------------


def test_preact_block_computes_preactivation() -> None:
    torch.manual_seed(0)
    block = PreActBlock(16, 16).eval()
    _randomise_bn_statistics(block, torch.Generator().manual_seed(1))
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        expected = x + block.conv2(torch.relu(block.bn2(block.conv1(torch.relu(block.bn1(x))))))
        actual = block(x.clone())
    torch.testing.assert_close(actual, expected)


def test_preact_resnet_has_final_norm_and_trains() -> None:
    model = ResNet(PreActBlock, [1, 1, 1, 1], num_classes=5, stem="cifar")
    assert model.final_norm is not None
    assert models.resnet18().final_norm is None
    out = model(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 5)
    out.sum().backward()
    assert model.conv1.weight.grad is not None and model.conv1.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------
# The paper's CIFAR networks
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", CIFAR_DEPTHS)
def test_cifar_parameter_counts_match_paper(depth: int) -> None:
    n = count_parameters(cifar_resnet(depth))
    paper = PAPER_CIFAR_PARAMS[depth]
    digits = len(paper.rstrip("M").split(".")[1])
    assert f"{n / 1e6:.{digits}f}M" == paper


@pytest.mark.parametrize("depth", CIFAR_DEPTHS)
def test_plain_net_same_count_as_option_a(depth: int) -> None:
    assert count_parameters(cifar_resnet(depth, plain=True)) == count_parameters(
        cifar_resnet(depth, shortcut="A")
    )


@pytest.mark.parametrize("depth", [20, 56])
def test_option_b_adds_exactly_two_projections(depth: int) -> None:
    extra = count_parameters(cifar_resnet(depth, shortcut="B")) - count_parameters(
        cifar_resnet(depth, shortcut="A")
    )
    # 1x1 conv + BN (weight, bias) for 16->32 and 32->64.
    assert extra == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def test_plain_net_has_no_shortcut() -> None:
    model = cifar_resnet(20, plain=True)
    blocks = [m for m in model.modules() if isinstance(m, CifarBlock)]
    assert len(blocks) == 9
    assert all(b.plain and b.downsample is None for b in blocks)
    assert not any(isinstance(m, ZeroPadShortcut) for m in model.modules())


def test_plain_block_drops_the_identity() -> None:
    """With the residual branch silenced, a residual block passes x; a plain one gives 0."""
    x = torch.rand(1, 16, 8, 8)
    outputs = {}
    for plain in (False, True):
        block = CifarBlock(16, 16, plain=plain).eval()
        nn.init.zeros_(block.bn2.weight)
        with torch.no_grad():
            outputs[plain] = block(x.clone())
    torch.testing.assert_close(outputs[False], x)
    assert torch.all(outputs[True] == 0)


def test_zero_pad_shortcut() -> None:
    shortcut = ZeroPadShortcut(16, 32, stride=2)
    assert count_parameters(shortcut) == 0
    x = torch.randn(2, 16, 8, 8)
    out = shortcut(x)
    assert out.shape == (2, 32, 4, 4)
    torch.testing.assert_close(out[:, :16], x[:, :, ::2, ::2])
    assert torch.all(out[:, 16:] == 0)
    with pytest.raises(ValueError, match="'B'"):
        ZeroPadShortcut(32, 16, stride=1)


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_cifar_block_shapes(shortcut: str) -> None:
    block = CifarBlock(16, 32, 2, shortcut=shortcut)
    assert block(torch.randn(2, 16, 32, 32)).shape == (2, 32, 16, 16)
    expected = ZeroPadShortcut if shortcut == "A" else nn.Sequential
    assert isinstance(block.downsample, expected)
    assert CifarBlock(16, 16, shortcut=shortcut).downsample is None


@pytest.mark.parametrize("depth", [8, 20, 110])
def test_cifar_resnet_layer_count_and_output(depth: int) -> None:
    model = cifar_resnet(depth, num_classes=100)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == depth  # shortcut "A" adds no conv
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 8, 8)).shape == (2, 100)


def test_cifar_resnet_is_torchscriptable_and_picklable() -> None:
    torch.manual_seed(0)
    model = cifar_resnet(20).eval()
    x = torch.randn(2, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in new torch
        scripted = torch.jit.script(model)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        buffer.seek(0)
        loaded = torch.jit.load(buffer)
    clone = pickle.loads(pickle.dumps(model))
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(loaded(x), expected)
        torch.testing.assert_close(clone(x), expected)


# --------------------------------------------------------------------------------------
# build_model
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_build_model(name: str) -> None:
    model = build_model(name, num_classes=3)
    assert model.fc.out_features == 3
    if name in IMAGENET_NAMES:
        assert isinstance(model, ResNet) and isinstance(model.maxpool, nn.MaxPool2d)
    else:
        assert isinstance(model, CifarResNet)
        assert model.depth == int(name.removeprefix("plain").removeprefix("resnet"))
        assert model.plain == name.startswith("plain")
        assert model.shortcut == "A"


def test_build_model_cifar_stem() -> None:
    model = build_model("resnet18", stem="cifar")
    assert isinstance(model.maxpool, nn.Identity) and model.fc.out_features == 10


def test_model_names() -> None:
    assert len(MODEL_NAMES) == len(set(MODEL_NAMES)) == 15
    assert {"resnet18", "resnet152", "resnet20", "resnet110", "plain20", "plain110"} <= set(
        MODEL_NAMES
    )


# --------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------


def test_feature_map_sizes_imagenet_stem_collapses_on_32x32() -> None:
    shapes = dict(feature_map_shapes(models.resnet18(), (1, 3, 32, 32)))
    assert shapes["conv1"] == (1, 64, 16, 16)
    assert shapes["maxpool"] == (1, 64, 8, 8)
    assert shapes["layer4"] == (1, 512, 1, 1)
    assert shapes["fc"] == (1, 1000)


def test_feature_map_sizes_cifar_stem() -> None:
    shapes = feature_map_shapes(models.resnet18(stem="cifar"), (1, 3, 32, 32))
    names = [n for n, _ in shapes]
    assert names == [
        "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc",
    ]  # fmt: skip
    assert dict(shapes)["layer1"] == (1, 64, 32, 32)
    assert dict(shapes)["layer4"] == (1, 512, 4, 4)


def test_feature_map_sizes_cifar_resnet() -> None:
    shapes = dict(feature_map_shapes(cifar_resnet(20), (2, 3, 32, 32)))
    assert shapes["layer1"] == (2, 16, 32, 32)
    assert shapes["layer2"] == (2, 32, 16, 16)
    assert shapes["layer3"] == (2, 64, 8, 8)
    assert shapes["fc"] == (2, 10)


def test_feature_map_sizes_bottleneck() -> None:
    shapes = dict(feature_map_shapes(models.resnet50(), (1, 3, 64, 64)))
    assert shapes["layer1"] == (1, 256, 16, 16)
    assert shapes["layer4"] == (1, 2048, 2, 2)


def test_measurements_leave_model_as_found() -> None:
    model = cifar_resnet(8).train()
    feature_map_shapes(model, (1, 3, 32, 32))
    count_flops(model, (1, 3, 32, 32))
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.num_batches_tracked.item() == 0 for m in norms)


@pytest.mark.parametrize(("name", "paper_madds"), [("resnet18", 1.8e9), ("resnet34", 3.6e9)])
def test_flops_match_paper(name: str, paper_madds: float) -> None:
    """count_flops counts 2 FLOPs per multiply-add; the paper reports multiply-adds."""
    flops = count_flops(getattr(models, name)(), (1, 3, 224, 224))
    assert flops == pytest.approx(2 * paper_madds, rel=0.05)


def test_flops_count_by_hand() -> None:
    """ResNet-8 on 32x32: every conv and the fc, 2 FLOPs per multiply-add, nothing else."""

    def conv(c_in: int, c_out: int, size: int) -> int:
        return c_in * 9 * c_out * size * size

    multiply_adds = (
        conv(3, 16, 32)  # stem
        + conv(16, 16, 32) + conv(16, 16, 32)  # layer1
        + conv(16, 32, 16) + conv(32, 32, 16)  # layer2
        + conv(32, 64, 8) + conv(64, 64, 8)  # layer3
        + 64 * 10  # fc
    )  # fmt: skip
    model = cifar_resnet(8)
    assert count_flops(model, (1, 3, 32, 32)) == 2 * multiply_adds
    assert count_flops(model, (4, 3, 32, 32)) == 4 * 2 * multiply_adds


def test_flops_by_module() -> None:
    model = models.resnet50()
    per_child = flops_by_module(model, (1, 3, 64, 64))
    assert list(per_child) == [name for name, _ in model.named_children()]
    assert sum(per_child.values()) == count_flops(model, (1, 3, 64, 64))
    assert per_child["bn1"] == per_child["maxpool"] == 0
    assert per_child["fc"] == 2 * 2048 * 1000
    small = flops_by_module(cifar_resnet(8), (1, 3, 32, 32))
    assert small["layer1"] == 2 * 2 * (16 * 9 * 16 * 32 * 32)


def test_count_parameters_trainable_only() -> None:
    model = models.resnet18(num_classes=10)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.fc.parameters():
        p.requires_grad_(True)
    assert count_parameters(model, trainable_only=True) == 512 * 10 + 10
    assert count_parameters(model) == count_parameters(models.resnet18(num_classes=10))


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [21, 2, 7, 0, -4, 20.0, True])
def test_bad_depth(depth: object) -> None:
    with pytest.raises(ValueError, match=r"6n \+ 2") as info:
        cifar_resnet(depth)  # type: ignore[arg-type]
    assert repr(depth) in str(info.value) and "20" in str(info.value)


def test_smallest_depth_is_8() -> None:
    """ResNet-8: one block per stage; its parameters counted by hand from the shapes."""
    model = cifar_resnet(8)
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [1, 1, 1]
    conv = lambda c_in, c_out: 9 * c_in * c_out  # noqa: E731  (3x3, no bias)
    bn = lambda c: 2 * c  # noqa: E731  (scale and shift)
    expected = (
        conv(3, 16) + bn(16)
        + 2 * (conv(16, 16) + bn(16))
        + conv(16, 32) + conv(32, 32) + 2 * bn(32)  # option A shortcut: no parameters
        + conv(32, 64) + conv(64, 64) + 2 * bn(64)
        + 64 * 10 + 10
    )
    assert count_parameters(model) == expected == 75_290


def test_bad_shortcut() -> None:
    with pytest.raises(ValueError, match="'A', 'B'") as info:
        cifar_resnet(20, shortcut="C")
    assert "shortcut='C'" in str(info.value)
    with pytest.raises(ValueError, match="'A', 'B'"):
        CifarBlock(16, 16, shortcut="a")


def test_bad_name() -> None:
    with pytest.raises(ValueError, match="resnet19") as info:
        build_model("resnet19")
    assert all(name in str(info.value) for name in MODEL_NAMES)


def test_bad_stem() -> None:
    with pytest.raises(ValueError, match="'imagenet', 'cifar'"):
        models.resnet18(stem="tiny")
    with pytest.raises(ValueError, match="applies only to"):
        build_model("resnet20", stem="cifar")


@pytest.mark.parametrize("layers", [[2, 2, 2], [2, 0, 2, 2], [2, 2, 2, 2.0]])
def test_bad_layers(layers: list) -> None:
    with pytest.raises(ValueError, match="four positive block counts"):
        ResNet(BasicBlock, layers)


@pytest.mark.parametrize("num_classes", [0, -1, 2.5])
def test_bad_num_classes(num_classes: object) -> None:
    with pytest.raises(ValueError, match="num_classes"):
        cifar_resnet(20, num_classes=num_classes)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_classes"):
        models.resnet18(num_classes=num_classes)  # type: ignore[arg-type]


def test_bad_input_size() -> None:
    with pytest.raises(ValueError, match="input_size"):
        count_flops(cifar_resnet(8), (1, 3, 0, 32))
    with pytest.raises(ValueError, match="input_size"):
        feature_map_shapes(cifar_resnet(8), (1, 3, 32.0, 32))


# ---------------------------------------------------------------- MACs, pad layouts,
# third-party CIFAR checkpoints


def test_macs_are_half_the_flops() -> None:
    model = cifar_resnet(8)
    size = (1, 3, 32, 32)
    assert 2 * models.count_macs(model, size) == count_flops(model, size)
    assert models.macs_by_module(model, size) == {
        k: v // 2 for k, v in flops_by_module(model, size).items()
    }
    assert round(models.count_macs(models.resnet18()) / 1e9, 1) == 1.8  # the paper's "FLOPs"


def test_preact_resnet_projection_is_a_bare_conv() -> None:
    """Identity Mappings: the projection acts on the pre-activated input, no BN after."""
    model = ResNet(PreActBlock, [1, 1, 1, 1], num_classes=5, stem="cifar")
    down = model.layer2[0].downsample
    assert isinstance(down, nn.Sequential) and len(down) == 1
    assert isinstance(down[0], nn.Conv2d) and down[0].kernel_size == (1, 1)
    basic = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=5)
    assert isinstance(basic.layer2[0].downsample[1], nn.BatchNorm2d)


def test_pad_layouts() -> None:
    x = torch.randn(2, 16, 8, 8)
    after = ZeroPadShortcut(16, 32, 2)(x)
    split = ZeroPadShortcut(16, 32, 2, pad="split")(x)
    sub = x[:, :, ::2, ::2]
    assert torch.equal(after[:, :16], sub) and not after[:, 16:].any()
    assert torch.equal(split[:, 8:24], sub)
    assert not split[:, :8].any() and not split[:, 24:].any()
    # the formula popular PyTorch CIFAR ResNets use
    reference = torch.nn.functional.pad(sub, (0, 0, 0, 0, 32 // 4, 32 // 4))
    assert torch.equal(split, reference)


def test_pad_is_validated_and_stored() -> None:
    assert cifar_resnet(8).pad == "after"
    assert cifar_resnet(8, pad="split").pad == "split"
    assert cifar_resnet(8, pad="split").layer2[0].downsample.pad == "split"
    from resnet_nb.errors import ParameterError

    with pytest.raises(ParameterError, match="pad"):
        cifar_resnet(20, pad="middle")


class _ThirdPartyBlock(nn.Module):
    """A CIFAR block as popular PyTorch re-implementations write it."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Identity()
        self.pad = planes // 4 if (stride != 1 or in_planes != planes) else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.pad:
            short = torch.nn.functional.pad(
                x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad)
            )
        else:
            short = self.shortcut(x)
        return torch.relu(out + short)


class _ThirdPartyResNet(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, inp = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(_ThirdPartyBlock(inp, planes, stride if i == 0 else 1))
                inp = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = torch.nn.functional.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def _third_party_state_dict() -> tuple[_ThirdPartyResNet, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    theirs = _ThirdPartyResNet(1)
    _randomise_bn_statistics(theirs, torch.Generator().manual_seed(1))
    wrapped = nn.DataParallel(theirs)  # a checkpoint saved from DataParallel: "module."
    return theirs.eval(), wrapped.state_dict()


def test_third_party_checkpoint_loads_into_split_layout() -> None:
    theirs, state = _third_party_state_dict()
    assert any(k.startswith("module.linear.") for k in state)
    x = torch.randn(4, 3, 32, 32)
    split = models.load_cifar_state_dict(cifar_resnet(8, pad="split"), state, pad="split")
    with torch.no_grad():
        torch.testing.assert_close(split.eval()(x), theirs(x))


def test_third_party_checkpoint_in_the_after_layout_differs() -> None:
    theirs, state = _third_party_state_dict()
    x = torch.randn(4, 3, 32, 32)
    # Declaring the wrong layout is refused...
    with pytest.raises(models.ArchitectureMismatchError, match="pad"):
        models.load_cifar_state_dict(cifar_resnet(8), state, pad="split")
    # ...and it matters: the same weights in the "after" layout are another network.
    after = models.load_cifar_state_dict(cifar_resnet(8), state, pad="after")
    with torch.no_grad():
        assert not torch.allclose(after.eval()(x), theirs(x), atol=1e-3)


def test_third_party_checkpoint_unmapped_keys_fail_loudly() -> None:
    _, state = _third_party_state_dict()
    state = dict(state)
    state["module.head.weight"] = torch.zeros(3)
    with pytest.raises(models.ArchitectureMismatchError, match="module.head.weight"):
        models.load_cifar_state_dict(cifar_resnet(8, pad="split"), state, pad="split")
    _, state = _third_party_state_dict()
    with pytest.raises(models.ArchitectureMismatchError, match="lacks"):
        models.load_cifar_state_dict(cifar_resnet(14, pad="split"), state, pad="split")
    with pytest.raises(models.ArchitectureMismatchError):
        models.load_cifar_state_dict(models.resnet18(), state, pad="split")  # type: ignore[arg-type]
