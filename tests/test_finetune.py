"""Fine-tuning: weight loading, freezing, rate groups, budgets (inference: test_inference.py)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from PIL import Image

from resnet_nb import finetune as ft
from resnet_nb.data import DataCorruptError, ImageData
from resnet_nb.models import build_model
from resnet_nb.params import ParameterError
from resnet_nb.train import TrainConfig, fit, synthetic_data


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real engine checkpoint: one short ResNet-20 run on synthetic data."""
    out = tmp_path_factory.mktemp("source")
    data = synthetic_data(128, seed=3)
    fit(TrainConfig(model="resnet20", dataset="synthetic", epochs=1, batch_size=64,
                    precision="fp32", out=str(out)), train=data, val=None, test=None,
        progress=False)
    return out / "checkpoint.pt"


def test_checkpoint_source_loads_and_keeps_stats(checkpoint: Path) -> None:
    src = ft.load_checkpoint_source(checkpoint, verbose=False)
    assert src.architecture == "resnet20" and src.image_size == 32
    assert len(src.mean) == 3 and all(s > 0 for s in src.std)
    saved = torch.load(checkpoint, weights_only=True)["model"]
    assert torch.equal(src.model.state_dict()["conv1.weight"], saved["conv1.weight"])
    assert src.notes == []


def test_missing_checkpoint_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ft.WeightsNotFoundError, match="python -m resnet_nb.train"):
        ft.load_checkpoint_source(tmp_path / "nope.pt")


def test_other_architecture_names_missing_and_unexpected_keys(checkpoint: Path) -> None:
    state = ft.load_checkpoint_source(checkpoint, verbose=False).model.state_dict()
    with pytest.raises(ft.ArchitectureMismatchError) as err:
        ft.load_weights(build_model("resnet32"), state, source="checkpoint X")
    message = str(err.value)
    assert "checkpoint X" in message and "missing key" in message
    assert "layer1.3.conv1.weight" in message  # resnet32 has 5 blocks per stage, resnet20 3
    with pytest.raises(ft.ArchitectureMismatchError, match="unexpected key.*layer1.3"):
        ft.load_weights(build_model("resnet20"), build_model("resnet32").state_dict())


def test_shape_mismatch_in_body_is_an_error() -> None:
    state = build_model("resnet20", in_channels=1).state_dict()
    with pytest.raises(ft.ArchitectureMismatchError, match=r"conv1.weight: \(16, 1, 3, 3\)"):
        ft.load_weights(build_model("resnet20"), state)


def test_other_class_count_replaces_the_head_and_says_so(checkpoint: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    src = ft.load_checkpoint_source(checkpoint, verbose=False)
    model = build_model("resnet20", num_classes=4)
    head_before = model.fc.weight.clone()
    notes = ft.load_weights(model, src.model.state_dict(), source="the checkpoint")
    assert len(notes) == 1 and "head replaced" in notes[0] and "10-class" in notes[0]
    assert "4 classes" in notes[0]
    assert torch.equal(model.fc.weight, head_before)
    assert torch.equal(model.layer3[0].conv1.weight, src.model.layer3[0].conv1.weight)
    ft.load_checkpoint_source(checkpoint, into=build_model("resnet20", num_classes=4))
    assert "head replaced" in capsys.readouterr().out


def test_imagenet_weights_offline_error_names_file_and_place(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(ft.WeightsNotFoundError) as err:
        ft.load_imagenet_source("resnet18", download=False)
    message = str(err.value)
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    with pytest.raises(ft.WeightsNotFoundError, match="does not exist"):
        ft.load_imagenet_source("resnet18", path=tmp_path / "missing.pth")


def test_imagenet_weights_from_a_local_file(tmp_path: Path) -> None:
    import torchvision

    path = tmp_path / "resnet18.pth"
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), path)
    src = ft.load_imagenet_source("resnet18", path=path, verbose=False)
    assert src.mean == ft.IMAGENET_MEAN and src.image_size == 224 and len(src.classes) == 1000
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(src.model(x), reference.eval()(x), atol=1e-5)


def _probe_model() -> torch.nn.Module:
    model = build_model("resnet20")
    ft.replace_head(model, 3)
    return model


def test_linear_probe_trains_only_the_head_and_bn_stays_in_eval() -> None:
    model = ft.apply_strategy(_probe_model(), "linear_probe")
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    model.train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(isinstance(m, ft.FrozenBatchNorm2d) and not m.training for m in bns)
    before = {n: b.clone() for n, b in model.named_buffers()}
    model(torch.randn(8, 3, 32, 32) * 3 + 1)
    after = dict(model.named_buffers())
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_requires_grad_alone_lets_statistics_drift() -> None:
    model = ft.apply_strategy(_probe_model(), "linear_probe", freeze_batchnorm=False)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    model.train()
    before = model.bn1.running_mean.clone()
    model(torch.randn(8, 3, 32, 32) * 3 + 1)
    assert not torch.equal(before, model.bn1.running_mean)


def test_unfreeze_restores_trainable_batchnorm_with_the_same_tensors() -> None:
    model = ft.apply_strategy(_probe_model(), "linear_probe")
    weight = model.layer2[0].bn1.weight
    ft.unfreeze(model, ["layer2"])
    bn = model.layer2[0].bn1
    assert type(bn) is torch.nn.BatchNorm2d and bn.weight is weight and bn.weight.requires_grad
    assert isinstance(model.layer1[0].bn1, ft.FrozenBatchNorm2d)
    ft.apply_strategy(model, "full")
    assert all(p.requires_grad for p in model.parameters())
    assert not any(isinstance(m, ft.FrozenBatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("name", ["resnet20", "resnet18"])
def test_discriminative_groups_are_monotone(name: str) -> None:
    model = build_model(name)
    groups = ft.discriminative_param_groups(model, lr=0.1, lr_decay=0.5, weight_decay=1e-4)
    rates = [g["lr"] for g in groups]
    assert rates == sorted(rates) and rates[-1] == pytest.approx(0.1)
    assert rates[0] == pytest.approx(0.1 * 0.5 ** (len(ft.layer_groups(model)) - 1))
    covered = [id(p) for g in groups for p in g["params"]]
    assert sorted(covered) == sorted(id(p) for p in model.parameters())
    assert all(g["weight_decay"] == (1e-4 if g["name"].endswith("weights") else 0.0) for g in groups)
    with pytest.raises(ParameterError, match="lr_decay"):
        ft.discriminative_param_groups(model, lr=0.1, lr_decay=1.5)


def test_lr_scale_groups_under_the_engine_step_equal_per_group_sgd() -> None:
    """Discriminative rates through ``lr_scale`` equal torch's SGD with per-group rates."""
    from resnet_nb.schedules import apply_lr
    from resnet_nb.train import TrainStep

    torch.manual_seed(0)
    base = build_model("resnet20", num_classes=3).double()  # float64: exact up to rounding
    x, y = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randint(0, 3, (4,))
    a, b = copy.deepcopy(base), copy.deepcopy(base)
    groups_a = ft.discriminative_param_groups(a, lr_decay=0.5, weight_decay=5e-4)
    step_a = TrainStep(a, torch.optim.SGD(groups_a, lr=0.1, momentum=0.9, nesterov=True))
    groups_b = ft.discriminative_param_groups(b, lr=0.1, lr_decay=0.5, weight_decay=5e-4)
    opt_b = torch.optim.SGD([{"params": g["params"], "weight_decay": g["weight_decay"],
                              "lr": g["lr"]} for g in groups_b], momentum=0.9, nesterov=True)
    for _ in range(3):
        apply_lr(step_a.optimizer, 0.1)
        step_a(x, y)
        opt_b.zero_grad()
        torch.nn.functional.cross_entropy(b(x), y).backward()
        opt_b.step()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-10), name
    assert not torch.allclose(a.conv1.weight, base.conv1.weight)
    scales = sorted({g["lr_scale"] for g in groups_a})
    assert scales[-1] == 1.0 and scales[0] == 0.5 ** (len(ft.layer_groups(a)) - 1)


def test_unfreezing_stages_cover_every_group_once() -> None:
    model = build_model("resnet20")
    stages = ft.unfreezing_stages(model, 10)
    assert sum(e for e, _ in stages) == 10
    assert stages[0][1] == ["head"]
    assert set(stages[-1][1]) == {name for name, _ in ft.layer_groups(model)}
    assert all(set(a) < set(b) for (_, a), (_, b) in zip(stages, stages[1:]))
    assert len(ft.unfreezing_stages(model, 2)) == 2


def _labelled(n_per_class: list[int]) -> ImageData:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(n_per_class)])
    images = torch.arange(len(labels)).view(-1, 1, 1, 1).expand(-1, 3, 4, 4) % 256
    return ImageData(images.to(torch.uint8).contiguous(), labels.long(),
                     [f"c{i}" for i in range(len(n_per_class))], "test")


def test_label_budget_k_per_class_seeded_and_nested() -> None:
    data = _labelled([30, 25, 40])
    small = ft.sample_per_class(data, 5, seed=1)
    assert torch.bincount(small.labels).tolist() == [5, 5, 5]
    again = ft.sample_per_class(data, 5, seed=1)
    assert torch.equal(small.images, again.images)
    other = ft.sample_per_class(data, 5, seed=2)
    assert not torch.equal(small.images, other.images)
    large = ft.sample_per_class(data, 20, seed=1)
    assert set(small.images[:, 0, 0, 0].tolist()) <= set(large.images[:, 0, 0, 0].tolist())
    with pytest.raises(ParameterError, match="'c1' has 25"):
        ft.sample_per_class(data, 26)


def test_resize_images_to_three_channels() -> None:
    gray = ImageData(torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8),
                     torch.zeros(5, dtype=torch.long), ["a"], "gray")
    rgb = ft.resize_images(gray, 32)
    assert rgb.images.shape == (5, 3, 32, 32) and rgb.images.dtype == torch.uint8
    assert torch.equal(rgb.images[:, 0], rgb.images[:, 2])


def _write(path: Path, size: tuple[int, int], mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color=128 if mode == "L" else (200, 10, 10)).save(path)


def test_image_folder_target_handles_mixed_sizes_and_modes(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESNET_NB_CACHE", str(tmp_path / "cache"))
    for i in range(5):
        _write(tmp_path / "pics" / "cats" / f"{i}.png", (40 + i, 30), "L")
        _write(tmp_path / "pics" / "dogs" / f"{i}.jpg", (64, 48 + i))
    train, test = ft.load_target("folder", folder=tmp_path / "pics", size=32, test_fraction=0.2)
    assert train.classes == ["cats", "dogs"] and len(train) == 8 and len(test) == 2
    assert train.images.shape[1:] == (3, 32, 32)


@pytest.mark.parametrize("case", ["one_class", "empty_class", "not_an_image"])
def test_image_folder_target_bad_inputs_fail_clearly(tmp_path: Path, case: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESNET_NB_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "pics"
    _write(root / "cats" / "a.png", (8, 8))
    if case == "empty_class":
        (root / "dogs").mkdir()
        match = "dogs holds no images"
    elif case == "not_an_image":
        (root / "dogs").mkdir()
        (root / "dogs" / "notes.jpg").write_text("not a picture")
        match = "notes.jpg is not a readable image"
    else:
        match = "at least two"
    with pytest.raises((ValueError, DataCorruptError), match=match):
        ft.load_target("folder", folder=root, size=32)
    with pytest.raises(ParameterError, match="target_folder|folder=None"):
        ft.load_target("folder")


@pytest.fixture(scope="module")
def target() -> tuple[ImageData, ImageData]:
    data = synthetic_data(240, num_classes=3, seed=5)
    return data.subset(torch.arange(180)), data.subset(torch.arange(180, 240))


@pytest.mark.parametrize("strategy", ft.STRATEGIES)
def test_transfer_end_to_end_for_every_strategy(
    checkpoint: Path, target: tuple[ImageData, ImageData], strategy: str
) -> None:
    from resnet_nb.train import fit as engine_fit

    src = ft.load_checkpoint_source(checkpoint, verbose=False)
    train, test = target
    before = {n: t.clone() for n, t in src.model.state_dict().items()}
    calls = {"fit": 0}

    def counting_fit(*args, **kwargs):  # noqa: ANN002, ANN003
        calls["fit"] += 1
        return engine_fit(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        import resnet_nb.train

        mp.setattr(resnet_nb.train, "fit", counting_fit)
        result = ft.transfer(src, strategy, train, test, labels_per_class=20, epochs=10,
                             batch_size=10, lr=0.05, precision="fp32", device="cpu")
    assert calls["fit"] == 1  # one run of the engine, whatever the strategy
    assert result.train_images == 60 and result.model.fc.out_features == 3
    # measured: 0.82 (linear probe) to 1.0 (the others); chance is 1/3
    assert result.test_acc > 0.6, (strategy, result.test_acc)
    assert all(torch.equal(t, before[n]) for n, t in src.model.state_dict().items())
    trainable = {n for n, p in result.model.named_parameters() if p.requires_grad}
    if strategy == "linear_probe":
        assert trainable == {"fc.weight", "fc.bias"}
        frozen = {n: b for n, b in result.model.named_buffers() if not n.startswith("fc")}
        assert all(torch.equal(b, before[n]) for n, b in frozen.items())
    else:
        assert trainable == {n for n, _ in result.model.named_parameters()}
    if strategy == "scratch":
        assert result.mean != src.mean
    else:
        assert result.mean == src.mean and result.std == src.std


def test_gradual_unfreezing_keeps_one_optimiser_and_schedule(
    checkpoint: Path, target: tuple[ImageData, ImageData]
) -> None:
    from resnet_nb.train import Callback, TrainConfig, fit

    src = ft.load_checkpoint_source(checkpoint, verbose=False)
    model = copy.deepcopy(src.model)
    ft.replace_head(model, 3)
    ft.apply_strategy(model, "gradual")
    seen: list[tuple[int, int, int, float]] = []

    class Watch(Callback):
        def on_step_end(self, run) -> None:  # noqa: ANN001
            opt = run.state.optimizer
            trainable = sum(p.requires_grad for p in run.model.parameters())
            seen.append((run.state.epoch, trainable, len(opt.state), opt.param_groups[0]["lr"]))

    groups = ft.discriminative_param_groups(model, lr_decay=1.0, weight_decay=5e-4)
    config = TrainConfig(model="resnet20", epochs=4, batch_size=30, lr=0.05, device="cpu",
                         precision="fp32", mean=src.mean, std=src.std)
    fit(config, model=model, train=target[0], val=None, param_groups=groups,
        callbacks=[ft.GradualUnfreezing(4), Watch()], progress=False)
    by_epoch = {e: (t, s) for e, t, s, _ in seen}
    trainable = [by_epoch[e][0] for e in range(4)]
    assert trainable == sorted(trainable) and trainable[0] < trainable[-1]
    # momentum buffers are never reset: the optimiser state only grows
    states = [s for _, _, s, _ in seen]
    assert states == sorted(states) and states[-1] == trainable[-1]
    lrs = [lr for *_, lr in seen]  # one one-cycle schedule across the stages
    peak = lrs.index(max(lrs))
    assert lrs[:peak + 1] == sorted(lrs[:peak + 1]) and lrs[peak:] == sorted(lrs[peak:])[::-1]


def test_transfer_rejects_targets_of_the_wrong_size(checkpoint: Path) -> None:
    src = ft.load_checkpoint_source(checkpoint, verbose=False)
    data = synthetic_data(60, num_classes=3, seed=5)
    with pytest.raises(ParameterError, match="resize_images"):
        ft.transfer(src, "full", ft.resize_images(data, 16), data)


def test_checkpoint_of_another_architecture_is_refused(checkpoint: Path) -> None:
    with pytest.raises(ft.ArchitectureMismatchError, match="resnet20"):
        ft.load_checkpoint_source(checkpoint, into=build_model("plain20"), verbose=False)


