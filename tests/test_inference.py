"""Inference: preprocessing (the same as training's), predict, export, Grad-CAM.

The export, predict and Grad-CAM tests moved here from test_finetune.py unchanged.
"""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import resnet_nb
from resnet_nb import finetune as ft
from resnet_nb.data import load_image_folder
from resnet_nb.errors import (
    DataCorruptError,
    DataNotFoundError,
    ParameterError,
    ResnetNbError,
    RunFolderError,
)
from resnet_nb.inference import export_onnx, export_parity, export_torchscript, grad_cam, preprocess
from resnet_nb.models import build_model

PLAIN = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RESNET_NB_CACHE", str(tmp_path / "cache"))


def _probe_model() -> torch.nn.Module:
    model = build_model("resnet20")
    ft.replace_head(model, 3)
    return model


def _noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


# --------------------------------------------------------------------------- moved from test_finetune.py


def test_export_parity_torchscript_and_onnx(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = ft.apply_strategy(_probe_model(), "linear_probe").eval()
    x = torch.randn(3, 3, 32, 32)
    diffs = export_parity(model, x, tmp_path)
    assert diffs["max_abs_logit"] > 0
    assert diffs["torchscript"] < 1e-5 and diffs["onnx"] < 1e-4, diffs
    from resnet_nb.inference import onnx_logits

    bigger = torch.randn(5, 3, 32, 32)  # the batch size is dynamic
    with torch.no_grad():
        assert torch.allclose(onnx_logits(tmp_path / "model.onnx", bigger), model(bigger),
                              atol=1e-4)


def test_predict_on_files_pil_and_tensors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=3).eval()
    classes = ["a", "b", "c"]
    pixels = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    paths = []
    for i, img in enumerate(pixels):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(paths[-1])
    prep = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    from_files = resnet_nb.predict(model, paths, classes, k=2, **prep)
    from_pil = resnet_nb.predict(model, [Image.open(p) for p in paths], classes, k=2, **prep)
    from_tensor = resnet_nb.predict(model, pixels, classes, k=2, **prep)
    from_float = resnet_nb.predict(model, pixels[0].float() / 255, classes, k=2, **prep)
    assert len(from_files) == 2 and all(len(top) == 2 for top in from_files)
    for a, b, c in zip(from_files, from_pil, from_tensor, strict=True):
        assert [n for n, _ in a] == [n for n, _ in b] == [n for n, _ in c]
        assert [p for _, p in a] == pytest.approx([p for _, p in c], abs=1e-5)
    assert from_float[0][0][0] == from_tensor[0][0][0]
    with torch.no_grad():
        probs = model(preprocess(pixels, **prep)).softmax(1)
    assert from_tensor[0][0][1] == pytest.approx(float(probs[0].max()), abs=1e-6)
    assert from_files[0][0][1] >= from_files[0][1][1]
    gray = resnet_nb.predict(model, Image.new("L", (50, 40)), classes, k=1, size=32, **prep)
    assert len(gray) == 1
    with pytest.raises(FileNotFoundError, match="missing.png"):
        resnet_nb.predict(model, [tmp_path / "missing.png"], classes, **prep)
    with pytest.raises(ValueError, match="differ in size"):
        resnet_nb.predict(model, [Image.new("RGB", (8, 8)), Image.new("RGB", (9, 9))],
                          classes, **prep)
    with pytest.raises(ValueError, match="k=4"):
        resnet_nb.predict(model, pixels, classes, k=4, **prep)


def test_grad_cam_maps_and_leaves_the_model_alone() -> None:
    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=3).train()
    x = torch.randn(2, 3, 32, 32)
    before = {n: t.clone() for n, t in model.state_dict().items()}
    cams = grad_cam(model, x)
    assert cams.shape == (2, 32, 32) and float(cams.min()) >= 0
    assert torch.allclose(cams.flatten(1).max(1).values, torch.ones(2))
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[n], t) for n, t in model.state_dict().items())
    other = grad_cam(model, x, target=[0, 1], layer="layer2")
    assert other.shape == (2, 32, 32)


# --------------------------------------------------------------------------- the same preprocessing as training


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_predict_prepares_a_file_exactly_as_load_image_folder(tmp_path: Path, fmt: str) -> None:
    suffix = ".png" if fmt == "PNG" else ".jpg"
    wide = tmp_path / "pets" / "cats" / f"wide{suffix}"
    tall = tmp_path / "pets" / "dogs" / f"tall{suffix}"
    for path, size, seed in ((wide, (70, 41), 1), (tall, (37, 60), 2)):
        path.parent.mkdir(parents=True, exist_ok=True)
        _noise(size, seed).save(path, format=fmt)
    for size in (32, None):
        if size is None:  # without size the folder needs one size: use one image per class
            for path in (wide, tall):
                _noise((40, 30), 3).save(path, format=fmt)
        trained_on = load_image_folder(tmp_path / "pets", size=size).images.float() / 255
        at_prediction = preprocess([wide, tall], size=size, **PLAIN)
        assert torch.equal(at_prediction, trained_on), f"size={size}: prediction differs"
        pil = preprocess([Image.open(wide), Image.open(tall)], size=size, **PLAIN)
        assert torch.equal(pil, trained_on)
        as_uint8 = preprocess((trained_on * 255).round().to(torch.uint8), size=size, **PLAIN)
        assert torch.equal(as_uint8, trained_on)


def test_resize_keeps_the_aspect_ratio_by_centre_cropping() -> None:
    # Left third red, middle green, right third blue: a centre crop keeps only green,
    # a squash to 32x32 would keep all three colours.
    img = np.zeros((32, 96, 3), dtype=np.uint8)
    img[:, :32, 0] = img[:, 32:64, 1] = img[:, 64:, 2] = 255
    for x in (Image.fromarray(img), img, torch.from_numpy(img).permute(2, 0, 1).float() / 255):
        out = preprocess(x, size=32, **PLAIN)[0]
        assert out.shape == (3, 32, 32)
        assert float(out[1].min()) > 0.9 and float(out[0].max()) < 0.1 and float(out[2].max()) < 0.1


@pytest.mark.parametrize(
    ("image", "level"),
    [
        (Image.new("I;16", (6, 4), 40_000), round(40_000 / 257)),
        (Image.new("I", (6, 4), 40_000), round(40_000 / 257)),
        (Image.new("F", (6, 4), 0.5), 128),
        (np.full((4, 6), 65535, dtype=np.uint16), 255),
        (np.full((4, 6, 3), 0.25, dtype=np.float32), 64),
        (torch.full((1, 4, 6), 51400, dtype=torch.int32).to(getattr(torch, "uint16", torch.int32)), 200),
    ],
    ids=["I;16", "I", "F", "uint16-array", "float-array", "uint16-tensor"],
)
def test_wide_pixels_are_scaled_to_8_bits_not_clipped(image: object, level: int) -> None:
    if isinstance(image, torch.Tensor) and image.dtype != getattr(torch, "uint16", None):
        pytest.skip("this torch has no uint16 dtype")
    out = preprocess(image, **PLAIN)
    assert out.shape == (1, 3, 4, 6)
    assert torch.equal(out, torch.full_like(out, level / 255)), (float(out.min()), level)


def test_float_pixels_outside_0_1_are_stretched() -> None:
    ramp = np.linspace(-2.0, 6.0, 24, dtype=np.float32).reshape(4, 6)
    out = preprocess(ramp, **PLAIN)[0, 0]
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0
    assert len(torch.unique(out)) == 24, "a ramp keeps its levels"


# --------------------------------------------------------------------------- clear errors


def test_predict_on_a_folder_is_a_clear_error(tmp_path: Path) -> None:
    model = build_model("resnet20", num_classes=2).eval()
    (tmp_path / "pics").mkdir()
    with pytest.raises(ParameterError, match=r"pics is a folder, not an image file.*load_image_folder"):
        resnet_nb.predict(model, tmp_path / "pics", ["a", "b"], k=1, **PLAIN)
    with pytest.raises(DataNotFoundError, match="nope.png does not exist"):
        resnet_nb.predict(model, tmp_path / "nope.png", ["a", "b"], k=1, **PLAIN)
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(DataCorruptError, match="notes.png is not a readable image"):
        resnet_nb.predict(model, tmp_path / "notes.png", ["a", "b"], k=1, **PLAIN)


def test_decompression_bomb_is_refused_with_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "huge.png"
    Image.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow refuses above twice this
    with pytest.raises(DataCorruptError, match=r"huge.png is refused as a possible decompression bomb.*MAX_IMAGE_PIXELS"):
        preprocess(path, **PLAIN)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "small.png")
    path.rename(tmp_path / "b" / "huge.png")
    with pytest.raises(DataCorruptError, match="b/huge.png is not a readable image.*DecompressionBomb"):
        load_image_folder(tmp_path)


def test_export_to_a_missing_or_unusable_folder_names_the_path(tmp_path: Path) -> None:
    model = build_model("resnet20", num_classes=3).eval()
    example = torch.randn(1, 3, 32, 32)
    missing = tmp_path / "no-such-folder" / "model.onnx"
    for export in (export_torchscript, export_onnx):
        with pytest.raises(RunFolderError, match=r"no-such-folder does not exist.*create the folder"):
            export(model, missing, example)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(RunFolderError, match=r"a-file is a file"):
        export_torchscript(model, tmp_path / "a-file" / "model.pt", example)
    with pytest.raises(RunFolderError, match="it is a folder; give a file name"):
        export_onnx(model, tmp_path, example)
    assert isinstance(RunFolderError("x"), ResnetNbError)


def test_export_that_fails_while_writing_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = build_model("resnet20", num_classes=3).eval()

    import resnet_nb.state

    def full_disk(fd: int) -> None:  # the bytes went out; flushing them to disk fails
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(resnet_nb.state.os, "fsync", full_disk)
    with pytest.raises(RunFolderError, match=r"disk holding .* is full: model.pt"):
        export_torchscript(model, tmp_path / "model.pt", torch.randn(1, 3, 32, 32))
    assert list(tmp_path.iterdir()) == []


def test_onnx_export_is_one_self_contained_file(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from resnet_nb.inference import onnx_logits

    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=3).eval()
    path = export_onnx(model, tmp_path / "model.onnx", torch.randn(1, 3, 32, 32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"], "no external-data file"
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(onnx_logits(path, x), model(x), atol=1e-4)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    path.rename(moved / "copy.onnx")  # runs alone, away from where it was written
    with torch.no_grad():
        assert torch.allclose(onnx_logits(moved / "copy.onnx", x), model(x), atol=1e-4)


def test_grad_cam_unknown_layer_suggests_names() -> None:
    model = build_model("resnet20", num_classes=3)
    with pytest.raises(ParameterError, match=r"layer='layr3'.*'layer3'"):
        grad_cam(model, torch.randn(1, 3, 32, 32), layer="layr3")
