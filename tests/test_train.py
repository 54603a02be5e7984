"""Tests of the training engine (resnet_nb.train) and the augmentation (resnet_nb.augment)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnet_nb.augment import Augment, cutout, normalize, random_crop_flip
from resnet_nb.params import ParameterError
from resnet_nb.train import (
    TIMING_FIELDS,
    LRSchedule,
    NonFiniteLossError,
    TrainConfig,
    evaluate,
    fit,
    load_checkpoint,
    lr_range_test,
    param_groups,
    predict_logits,
    resolve_precision,
    limit_train,
    main,
    synthetic_data,
)

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ----------------------------------------------------------------------------- augmentation


def _images(n: int = 8, c: int = 3, size: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, size, size), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_crop_is_a_shift_within_the_padding(mode: str) -> None:
    images = _images()
    out = random_crop_flip(
        images, padding=4, flip=False, padding_mode=mode,
        generator=torch.Generator().manual_seed(1),
    )
    assert out.dtype == torch.uint8 and out.shape == images.shape
    pad = "constant" if mode == "zeros" else "reflect"
    padded = F.pad(images.float(), (4, 4, 4, 4), mode=pad)
    shifts_seen = set()
    for i in range(len(images)):
        matches = [
            (dy, dx)
            for dy in range(9)
            for dx in range(9)
            if torch.equal(padded[i, :, dy : dy + 12, dx : dx + 12], out[i].float())
        ]
        assert matches, f"sample {i} is not a crop of the {mode}-padded image"
        shifts_seen.add(matches[0])
    assert len(shifts_seen) > 1  # the shifts are random per sample


def test_flip_flips_half_and_only_flips() -> None:
    images = _images(n=200, size=6)
    out = random_crop_flip(images, padding=0, flip=True, generator=torch.Generator().manual_seed(0))
    same = [torch.equal(out[i], images[i]) for i in range(200)]
    flipped = [torch.equal(out[i], images[i].flip(-1)) for i in range(200)]
    assert all(s or f for s, f in zip(same, flipped))
    assert 70 < sum(flipped) < 130


def test_augmentation_is_deterministic_given_the_generator() -> None:
    images = _images(n=32)
    a = random_crop_flip(images, generator=torch.Generator().manual_seed(5))
    b = random_crop_flip(images, generator=torch.Generator().manual_seed(5))
    c = random_crop_flip(images, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_normalize_matches_the_definition_and_cutout_zeroes_a_square() -> None:
    images = _images(n=4)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    x = normalize(images, mean, std)
    expected = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(
        std
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-5)
    ones = torch.ones(16, 3, 32, 32)
    cut = cutout(ones, size=8, generator=torch.Generator().manual_seed(0))
    zeros_per_image = (cut[:, 0] == 0).sum((1, 2))
    assert torch.all(zeros_per_image <= 64) and torch.all(zeros_per_image > 0)
    assert torch.equal(cut[:, 0] == 0, cut[:, 2] == 0)  # same square in every channel


def test_augment_channels_last_output() -> None:
    aug = Augment(mean=(0.5,) * 3, std=(0.25,) * 3, channels_last=True)
    x = aug.train(_images(), torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------- schedules


def test_step_schedule_follows_the_paper_at_its_boundaries() -> None:
    s = LRSchedule("step", peak_lr=0.1, total_steps=64_000)
    assert s.milestones == (32_000, 48_000)
    for step, lr in [(0, 0.1), (31_999, 0.1), (32_000, 0.01), (47_999, 0.01), (48_000, 0.001),
                     (63_999, 0.001)]:
        assert math.isclose(s.lr(step), lr, rel_tol=1e-9), step
    half = LRSchedule("step", peak_lr=0.1, total_steps=6_400)  # scales with the run
    assert half.milestones == (3_200, 4_800)


def test_onecycle_and_cosine_values() -> None:
    one = LRSchedule("onecycle", peak_lr=1.0, total_steps=100)
    assert math.isclose(one.lr(0), 0.04)
    assert math.isclose(one.lr(25), 1.0)
    assert one.lr(10) < one.lr(20) < one.lr(25)
    assert one.lr(50) > one.lr(75) > one.lr(99) > 0
    assert math.isclose(one.lr(100), 0.0, abs_tol=1e-12)
    cos = LRSchedule("cosine", peak_lr=1.0, total_steps=100)
    assert math.isclose(cos.lr(0), 1.0) and math.isclose(cos.lr(50), 0.5)
    assert math.isclose(cos.lr(100), 0.0, abs_tol=1e-12)


def test_paper_warmup_holds_lr_low_until_error_below_80_percent() -> None:
    s = LRSchedule("step", peak_lr=0.1, total_steps=64_000, warmup=True)
    for step in range(30):
        assert math.isclose(s.lr(step), 0.01)
        s.observe(step, lambda: 0.9)  # 90% error: still warming up
    for step in range(30, 33):  # window of 10: (7 * 0.9 + 3 * 0.5) / 10 = 0.78 < 0.8
        assert s.warmup_end is None
        s.observe(step, lambda: 0.5)
    assert s.warmup_end == 33 and math.isclose(s.lr(33), 0.1)
    restored = LRSchedule("step", peak_lr=0.1, total_steps=64_000, warmup=True)
    restored.load_state_dict(s.state_dict())
    assert restored.lr(34) == s.lr(34) and restored.warmup_end == 33
    capped = LRSchedule("step", peak_lr=0.1, total_steps=64_000, warmup=True)
    for step in range(800):
        capped.observe(step, lambda: 0.95)
    assert capped.warmup_end == 800  # never stays in warm-up longer than 2x the paper's


# ----------------------------------------------------------------------------- optimiser


def test_no_weight_decay_on_batchnorm_and_bias() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(),
                          nn.Linear(4 * 30 * 30, 2))
    decay, no_decay = param_groups(model, 5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(decay["params"]) == {id(model[0].weight), id(model[3].weight)}
    assert ids(no_decay["params"]) == {id(model[1].weight), id(model[1].bias), id(model[3].bias)}


def test_precision_resolution() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == (None, False)
    assert resolve_precision("bf16", cpu) == (torch.bfloat16, False)
    assert resolve_precision("fp16", cpu) == (torch.float16, False)  # scaler only on CUDA
    dtype, scaler = resolve_precision("auto", cpu)
    assert dtype in (torch.bfloat16, None) and scaler is False


@pytest.mark.parametrize("amx", [True, False])
def test_auto_precision_on_cpu_takes_bf16_only_with_amx(
    amx: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bf16 autocast is slower than fp32 on CPUs without bf16 matrix units."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    expected = torch.bfloat16 if amx else None
    assert resolve_precision("auto", torch.device("cpu")) == (expected, False)
    # asked for explicitly, bf16 is used either way
    assert resolve_precision("bf16", torch.device("cpu")) == (torch.bfloat16, False)


# ----------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("model", "resnet21", "resnet20"),
        ("epochs", 0, "positive integer"),
        ("batch_size", "128", "positive integer"),
        ("schedule", "linear", "onecycle"),
        ("device", "tpu", "cpu"),
        ("precision", "fp8", "bf16"),
        ("lr", -0.1, "positive"),
        ("label_smoothing", 1.5, "[0, 1)"),
    ],
)
def test_bad_parameters_are_named(field: str, value: object, needle: str) -> None:
    with pytest.raises(ParameterError) as info:
        TrainConfig(**{field: value}).validate()
    message = str(info.value)
    assert f"{field}={value!r}" in message and needle in message


@pytest.mark.parametrize(
    ("model", "stem", "needles"),
    [
        ("resnet20", "cifar", ("stem='cifar'", "resnet18", "leave it unset")),
        ("resnet18", "tiny", ("stem='tiny'", "imagenet", "cifar")),
    ],
)
def test_bad_stem_is_named(model: str, stem: str, needles: tuple[str, ...]) -> None:
    with pytest.raises(ParameterError) as info:
        TrainConfig(model=model, stem=stem).validate()
    assert all(n in str(info.value) for n in needles), str(info.value)


def test_normalize_constants_are_made_once_per_device() -> None:
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    first = normalize(images, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2))
    again = normalize(images, [0.5, 0.4, 0.3], [0.2, 0.2, 0.2])  # lists hash as tuples
    assert torch.equal(first, again)
    from resnet_nb.augment import _affine

    assert _affine.cache_info().hits >= 1


def test_resume_needs_a_run_folder() -> None:
    with pytest.raises(ParameterError, match="resume=True"):
        TrainConfig(resume=True).validate()


def test_cli_bad_parameter_exits_2_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "resnet_nb.train", "--epochs", "0", "--dataset", "synthetic"],
        capture_output=True, text=True, env=_env(), timeout=120,
    )
    assert proc.returncode == 2
    assert "epochs=0" in proc.stderr and "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- fit


class TinyNet(nn.Module):
    """A very small conv net so engine tests run in a second or two."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(8 * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def _splits(n_train: int = 256) -> tuple:
    full = synthetic_data(n_train + 128, seed=3)
    return (full.subset(torch.arange(n_train)), full.subset(torch.arange(n_train, n_train + 64)),
            full.subset(torch.arange(n_train + 64, n_train + 128)))


def test_fit_learns_and_writes_history_checkpoint_and_metrics(tmp_path: Path) -> None:
    train, val, test = _splits()
    config = TrainConfig(model="tiny", epochs=4, batch_size=32, lr=0.2, out=str(tmp_path),
                         device="cpu", precision="fp32")
    result = fit(config, train=train, val=val, test=test, model=TinyNet(), progress=False)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    keys = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s",
            "wall_time_s"}
    assert keys <= set(result.history[0])
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.test is not None and result.test["acc"] > 0.3  # chance is 0.1
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved == json.loads(json.dumps(result.history))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_acc"] == result.test["acc"]
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")  # weights_only=True
    assert ckpt["epoch"] == 4 and len(ckpt["history"]) == 4
    assert set(ckpt) >= {"model", "optimizer", "schedule", "scaler", "rng", "config"}
    assert ckpt["classes"] == train.classes == metrics["classes"]
    for name, value in result.model.state_dict().items():
        assert torch.equal(ckpt["model"][name], value), name
    again = evaluate(result.model, test, mean=result.mean, std=result.std, precision="fp32")
    assert math.isclose(again["acc"], result.test["acc"])
    logits = predict_logits(result.model, test, mean=result.mean, std=result.std,
                            precision="fp32")
    assert logits.shape == (64, 10)
    assert math.isclose((logits.argmax(1) == test.labels).float().mean().item(), again["acc"])


def test_cifar_stem_reaches_the_network_the_checkpoint_and_fine_tuning(tmp_path: Path) -> None:
    from resnet_nb import finetune as ft

    data = synthetic_data(32, seed=2)
    config = TrainConfig(model="resnet18", stem="cifar", dataset="synthetic", epochs=1,
                         batch_size=16, device="cpu", precision="fp32", out=str(tmp_path))
    result = fit(config, train=data, val=None, test=None, progress=False)
    assert result.model.conv1.kernel_size == (3, 3)  # the ImageNet stem's is 7x7
    assert isinstance(result.model.maxpool, nn.Identity)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["config"]["stem"] == "cifar"
    source = ft.load_checkpoint_source(tmp_path / "checkpoint.pt", verbose=False)
    assert source.stem == "cifar" and source.model.conv1.kernel_size == (3, 3)


def test_cli_records_its_command_and_device_in_metrics(tmp_path: Path) -> None:
    argv = ["--dataset", "synthetic", "--epochs", "1", "--train-limit", "64",
            "--val-size", "32", "--batch-size", "32", "--device", "cpu", "--precision", "fp32",
            "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["command"] == "python -m resnet_nb.train " + " ".join(argv)
    assert metrics["device_name"].startswith("cpu") and metrics["python"]
    assert metrics["config"]["train_limit"] == 64 and metrics["train_images"] == 64


def test_limit_train_draws_a_seeded_random_subset_in_order() -> None:
    data = synthetic_data(300, seed=3)
    # sort by class, as some copies of CIFAR-10 are stored: a prefix is one class
    data = data.subset(data.labels.argsort(stable=True))
    a = limit_train(data, 100, seed=0)
    assert len(a) == 100 and len(set(a.labels.tolist())) > 5
    assert torch.equal(a.images, limit_train(data, 100, seed=0).images)
    assert not torch.equal(a.images, limit_train(data, 100, seed=1).images)
    assert torch.equal(a.labels, a.labels.sort().values)  # original order kept
    assert limit_train(data, None) is data and limit_train(data, 300) is data
    with pytest.raises(ParameterError, match="limit"):
        limit_train(data, 0)


def test_nan_loss_stops_with_step_and_last_finite_loss() -> None:
    train, val, _ = _splits(128)

    class Exploding(TinyNet):
        calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            Exploding.calls += 1 if self.training else 0
            out = super().forward(x)
            return out * float("nan") if Exploding.calls == 6 else out

    config = TrainConfig(model="tiny", epochs=2, batch_size=32, device="cpu", precision="fp32")
    with pytest.raises(NonFiniteLossError) as info:
        fit(config, train=train, val=val, model=Exploding(), progress=False)
    message = str(info.value)
    assert "epoch 2, iteration 6" in message and "last finite loss" in message
    assert "iteration 5" in message


def test_lr_range_test_restores_weights() -> None:
    train, _, _ = _splits(128)
    model = TinyNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = lr_range_test(model, train, batch_size=32, steps=30, progress=False, precision="fp32")
    assert len(out["lr"]) == len(out["loss"]) > 10
    assert out["lr"] == sorted(out["lr"]) and out["suggested_lr"] > 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


# ----------------------------------------------------------------------------- resume and DDP


def _cli(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "resnet_nb.train", "--dataset", "synthetic", "--model", "resnet20",
        "--train-limit", "256", "--val-size", "64", "--batch-size", "64", "--epochs", "3",
        "--lr", "0.2", "--device", "cpu", "--seed", "7", "--out", str(out), "--no-progress",
        *extra,
    ]


def _strip_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in history]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen(_cli(killed), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    checkpoint = killed / "checkpoint.pt"
    deadline = time.monotonic() + 180
    while not checkpoint.exists():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "no checkpoint after 180 s"
        time.sleep(0.05)
    time.sleep(0.2)  # inside epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    epochs_done = load_checkpoint(checkpoint)["epoch"]
    assert epochs_done in (1, 2), "the kill must land before the run finished"
    assert not (killed / "metrics.json").exists()

    subprocess.run(_cli(killed, "--resume"), env=_env(), check=True, timeout=300)
    subprocess.run(_cli(clean), env=_env(), check=True, timeout=300)

    a, b = load_checkpoint(killed / "checkpoint.pt"), load_checkpoint(clean / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == 3
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert _strip_timing(a["history"]) == _strip_timing(b["history"])
    ha = json.loads((killed / "history.json").read_text())
    assert _strip_timing(ha) == _strip_timing(json.loads((clean / "history.json").read_text()))
    ma = json.loads((killed / "metrics.json").read_text())
    mb = json.loads((clean / "metrics.json").read_text())
    assert ma["test_acc"] == mb["test_acc"] and ma["test_loss"] == mb["test_loss"]


_DDP_SCRIPT = """
import sys, torch
from torch import nn
from resnet_nb.train import TrainConfig, fit, synthetic_data

class NoBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.fc = nn.Linear(32, 10)
    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean((2, 3)))

out, kind = sys.argv[1], sys.argv[2]
full = synthetic_data(640, seed=5)
train, val = full.subset(torch.arange(512)), full.subset(torch.arange(512, 640))
config = TrainConfig(model=kind, epochs=2, batch_size=64, lr=0.1, device="cpu",
                     precision="fp32", channels_last=False, seed=3)
torch.manual_seed(3)
model = NoBN() if kind == "nobn" else None
if model is None:
    from resnet_nb.models import build_model
    model = build_model("resnet20")
result = fit(config, train=train, val=val, model=model, progress=False)
import os
rank = int(os.environ.get("RANK", "0"))
torch.save({"model": result.model.state_dict(), "history": result.history},
           f"{out}/{kind}-rank{rank}.pt")
"""


@pytest.mark.slow
def test_torchrun_two_cpu_processes_match_one_process(tmp_path: Path) -> None:
    script = tmp_path / "ddp_run.py"
    script.write_text(_DDP_SCRIPT)
    single, multi = tmp_path / "single", tmp_path / "multi"
    single.mkdir()
    multi.mkdir()
    env = _env()
    env["OMP_NUM_THREADS"] = "1"
    for kind in ("nobn", "resnet20"):
        subprocess.run([sys.executable, str(script), str(single), kind], env=env, check=True,
                       timeout=120)
        subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
             str(script), str(multi), kind],
            env=env, check=True, timeout=180,
        )
    for kind in ("nobn", "resnet20"):
        r0 = torch.load(multi / f"{kind}-rank0.pt", weights_only=True)
        r1 = torch.load(multi / f"{kind}-rank1.pt", weights_only=True)
        for name in r0["model"]:  # every rank ends with the same weights and buffers
            assert torch.equal(r0["model"][name], r1["model"][name]), (kind, name)
        assert _strip_timing(r0["history"]) == _strip_timing(r1["history"])  # same metrics

    # Without BatchNorm, 2 ranks x 32 images compute exactly the gradient of 64 images,
    # up to float summation order: the weights agree to float32 round-off.
    one = torch.load(single / "nobn-rank0.pt", weights_only=True)
    two = torch.load(multi / "nobn-rank0.pt", weights_only=True)
    for name in one["model"]:
        torch.testing.assert_close(two["model"][name], one["model"][name], rtol=1e-4, atol=1e-5)
    # With BatchNorm, each rank normalises with the statistics of its own 32 images instead
    # of all 64, so the forward passes differ and SGD amplifies the difference: after these
    # 16 steps the weights of the two runs are about a third as far apart as training moved
    # them (measured), so comparing weights would test chaos, not correctness. What must
    # agree is the learning itself: per-epoch training loss within 5% (relative) and
    # training accuracy within 3 points (measured: ~2% and <1 point).
    one = torch.load(single / "resnet20-rank0.pt", weights_only=True)
    two = torch.load(multi / "resnet20-rank0.pt", weights_only=True)
    for a, b in zip(one["history"], two["history"], strict=True):
        assert math.isclose(a["train_loss"], b["train_loss"], rel_tol=0.05), (a, b)
        assert abs(a["train_acc"] - b["train_acc"]) < 0.03, (a, b)
