"""Using a trained model: predictions, export (TorchScript, ONNX) and Grad-CAM.

Inputs may be image files, PIL images or tensors. :func:`preprocess` turns any
of them into the batch a network expects: RGB, ``size`` x ``size`` pixels,
normalised with the statistics the network was trained with.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from resnet_nb.engine import model_device as _model_device

__all__ = [
    "preprocess",
    "predict",
    "export_torchscript",
    "export_onnx",
    "onnx_logits",
    "export_parity",
    "grad_cam",
]

ImageLike = Union[str, "os.PathLike[str]", Image.Image, torch.Tensor]


def _to_tensor(item: Any, index: int) -> torch.Tensor:
    """One image as a float tensor [C, H, W] in [0, 1]."""
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if not path.is_file():
            raise FileNotFoundError(f"image {index}: {path} does not exist")
        try:
            with Image.open(path) as img:
                item = img.convert("RGB")
        except (OSError, ValueError) as exc:
            raise ValueError(f"image {index}: {path} is not a readable image ({exc})") from None
    if isinstance(item, Image.Image):
        array = np.asarray(item.convert("RGB"), dtype=np.uint8)
        return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255
    if isinstance(item, torch.Tensor):
        if item.ndim == 2:
            item = item.unsqueeze(0)
        if item.ndim != 3:
            raise ValueError(f"image {index}: a tensor image must be [C, H, W], got {tuple(item.shape)}")
        if item.dtype == torch.uint8:
            return item.float() / 255
        if not item.is_floating_point():
            raise TypeError(f"image {index}: give uint8 pixels or floats in [0, 1], got {item.dtype}")
        return item.float()
    raise TypeError(
        f"image {index}: expected a file path, a PIL image or a tensor, got {type(item).__name__}"
    )


def preprocess(
    images: ImageLike | Sequence[ImageLike],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    size: int | None = None,
) -> torch.Tensor:
    """A normalised float batch ``[N, 3, size, size]`` from files, PIL images or tensors.

    Tensors are uint8 pixels (0..255) or floats in [0, 1], one image ``[C, H, W]``
    or a batch ``[N, C, H, W]``; one-channel images are repeated to RGB. With
    ``size``, every image is resized (bilinear) to ``size`` x ``size``; without it
    they must share one size. Then ``(x - mean) / std`` per channel.
    """
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        items: list[Any] = list(images)
    elif isinstance(images, (str, os.PathLike, Image.Image, torch.Tensor)):
        items = [images]
    else:
        items = list(images)
    if not items:
        raise ValueError("no images given")
    tensors = []
    for i, item in enumerate(items):
        x = _to_tensor(item, i)
        if x.shape[0] == 1:
            x = x.expand(3, -1, -1)
        if x.shape[0] != 3:
            raise ValueError(f"image {i} has {x.shape[0]} channels; give RGB or grayscale images")
        if size is not None and tuple(x.shape[1:]) != (size, size):
            x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False,
                              antialias=size < max(x.shape[1:]))[0]
        tensors.append(x)
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"images differ in size ({sorted(shapes)}): pass size=N to resize them")
    batch = torch.stack(tensors)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (batch - m) / s


def predict(
    model: nn.Module,
    images: ImageLike | Sequence[ImageLike],
    classes: Sequence[str],
    *,
    k: int = 3,
    mean: Sequence[float],
    std: Sequence[float],
    size: int | None = None,
) -> list[list[tuple[str, float]]]:
    """Top-``k`` class names with probabilities for each image.

    ``images``: file paths, PIL images or tensors (see :func:`preprocess`);
    ``mean``/``std``/``size``: how the model's inputs were prepared in training.
    Returns one list per image of ``(class name, probability)``, most likely
    first. The model runs in eval mode on its own device; its mode is restored.
    """
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= len(classes):
        raise ValueError(f"k={k!r} is invalid: it must be an integer in 1..{len(classes)}")
    x = preprocess(images, mean=mean, std=std, size=size).to(_model_device(model))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            logits = model(x).float().cpu()
    finally:
        model.train(was_training)
    if logits.shape[1] != len(classes):
        raise ValueError(f"the model has {logits.shape[1]} outputs but {len(classes)} classes were given")
    probs = logits.softmax(dim=1)
    top = probs.topk(k, dim=1)
    return [
        [(classes[int(i)], float(p)) for p, i in zip(values, indices, strict=True)]
        for values, indices in zip(top.values, top.indices, strict=True)
    ]


def export_torchscript(model: nn.Module, path: str | Path, example: torch.Tensor) -> Path:
    """Trace ``model`` (in eval mode, on the CPU) with ``example`` and save it to ``path``.

    Load it back with ``torch.jit.load(path)``; no resnet_nb code is needed then.
    """
    path = Path(path)
    model = model.cpu().eval()
    with torch.no_grad(), _quiet():
        traced = torch.jit.trace(model, example.cpu())
    traced.save(str(path))
    return path


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence TorchScript's deprecation notices and the ONNX exporter's progress lines."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=FutureWarning)
        yield


def export_onnx(model: nn.Module, path: str | Path, example: torch.Tensor) -> Path:
    """Export ``model`` (eval mode, CPU) to ONNX at ``path`` with a dynamic batch size.

    The graph has one input ``images`` and one output ``logits``. Needs the
    ``onnx`` and ``onnxscript`` packages (torch's exporter uses them).
    """
    path = Path(path)
    model = model.cpu().eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    with _quiet():
        torch.onnx.export(
            model,
            (example.cpu(),),
            str(path),
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
    return path


def onnx_logits(path: str | Path, x: torch.Tensor) -> torch.Tensor:
    """Run the ONNX model at ``path`` on ``x`` with onnxruntime (CPU); float32 logits."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    (out,) = session.run(None, {name: x.detach().cpu().float().numpy()})
    return torch.from_numpy(out)


def export_parity(
    model: nn.Module, x: torch.Tensor, folder: str | Path
) -> dict[str, float]:
    """Export ``model`` to TorchScript and ONNX in ``folder`` and compare with eager outputs.

    Returns the largest absolute difference of the logits of ``x`` for each
    format (``"torchscript"``, ``"onnx"``), next to the largest logit
    (``"max_abs_logit"``) for scale. Everything runs in fp32 on the CPU.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    x = x.cpu().float()
    with torch.no_grad():
        eager = model(x)
    ts_path = export_torchscript(model, folder / "model.pt", x[:1])
    with torch.no_grad(), _quiet():
        ts = torch.jit.load(str(ts_path))(x)
    onnx_path = export_onnx(model, folder / "model.onnx", x[:1])
    ox = onnx_logits(onnx_path, x)
    return {
        "torchscript": float((ts - eager).abs().max()),
        "onnx": float((ox - eager).abs().max()),
        "max_abs_logit": float(eager.abs().max()),
    }


def grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    *,
    layer: nn.Module | str | None = None,
    target: torch.Tensor | Sequence[int] | None = None,
) -> torch.Tensor:
    """Grad-CAM maps ``[N, H, W]`` in [0, 1] for a normalised batch ``x`` (Selvaraju et al., 2017).

    A forward hook on ``layer`` (default: the last stage, ``layer4`` or
    ``layer3``) catches its activations ``A``; the gradient of the ``target``
    class score (default: the predicted class) with respect to them is then
    taken with ``torch.autograd.grad``, so no parameter gradient is written. Each channel
    is weighted by its gradient averaged over space; the weighted sum passes a
    ReLU, is upsampled (bilinear) to the input size and divided by its maximum.
    The model runs in eval mode; its mode and parameters are left unchanged.
    """
    if isinstance(layer, str):
        layer = dict(model.named_modules())[layer]
    if layer is None:
        layer = getattr(model, "layer4", None) or getattr(model, "layer3", None)
        if layer is None:
            raise ValueError("pass layer=: the model has no layer4 or layer3")
    caught: dict[str, torch.Tensor] = {}

    def keep(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        caught["activations"] = output

    device = _model_device(model)
    was_training = model.training
    model.eval()
    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            inp = x.detach().to(device).float().requires_grad_(True)
            logits = model(inp)
            if target is None:
                chosen = logits.argmax(dim=1)
            else:
                chosen = torch.as_tensor(target, device=logits.device).long().view(-1)
            score = logits.gather(1, chosen[:, None]).sum()
            (grads,) = torch.autograd.grad(score, caught["activations"])
    finally:
        handle.remove()
        model.train(was_training)
    acts = caught["activations"].detach()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * acts).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(dim=1).values.clamp_min(1e-12)
    return (cam / peak[:, None, None]).cpu()
