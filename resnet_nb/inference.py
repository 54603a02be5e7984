"""Using a trained model: predictions, export (TorchScript, ONNX) and Grad-CAM.

Inputs may be image files, PIL images, numpy arrays or tensors. :func:`preprocess`
turns any of them into the batch a network expects: RGB, ``size`` x ``size``
pixels, normalised with the statistics the network was trained with. Files, PIL
images and arrays go through :func:`resnet_nb.data.image_to_uint8`, the function
:func:`resnet_nb.data.load_image_folder` decodes training images with, so an image
is prepared the same way at training and at prediction time.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import io
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from resnet_nb.data import image_to_uint8, read_image
from resnet_nb.engine import model_device
from resnet_nb.errors import ParameterError, RunFolderError
from resnet_nb.params import check_positive_int
from resnet_nb.state import atomic_write

__all__ = [
    "preprocess",
    "predict",
    "export_torchscript",
    "export_onnx",
    "onnx_logits",
    "export_parity",
    "grad_cam",
]

ImageLike = Union[str, "os.PathLike[str]", Image.Image, np.ndarray, torch.Tensor]


def _resize_center_crop_float(x: torch.Tensor, size: int) -> torch.Tensor:
    """Float image ``[C, H, W]``: shorter side to ``size`` (bilinear), centred square kept.

    The same geometry as :func:`resnet_nb.data.image_to_uint8` (which uses Pillow on
    uint8 pixels); the values agree to within interpolation rounding.
    """
    h, w = x.shape[1:]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    if (new_h, new_w) != (h, w):
        x = F.interpolate(
            x[None], size=(new_h, new_w), mode="bilinear", align_corners=False,
            antialias=scale < 1,
        )[0]
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return x[:, top : top + size, left : left + size]


def _float_pixels(x: torch.Tensor) -> torch.Tensor:
    """Float pixels to [0, 1]: kept when they already lie there, else stretched min..max."""
    x = x.float()
    if not torch.isfinite(x).all():
        raise ParameterError("a float image holds NaN or infinite values: give finite pixels")
    low, high = float(x.min()), float(x.max())
    if low >= -1e-6 and high <= 1 + 1e-6:
        return x.clamp(0, 1)
    if high > low:
        return (x - low) / (high - low)
    return torch.zeros_like(x)


def _to_tensor(item: Any, index: int, size: int | None) -> torch.Tensor:
    """One image as a float tensor ``[3, H, W]`` in [0, 1], resized and cropped to ``size``."""
    if isinstance(item, (str, os.PathLike)):
        return read_image(item, size=size).float() / 255
    if isinstance(item, (Image.Image, np.ndarray)):
        return image_to_uint8(item, size=size).float() / 255
    if isinstance(item, torch.Tensor):
        if item.ndim == 2:
            item = item.unsqueeze(0)
        if item.ndim != 3:
            raise ParameterError(
                f"image {index}: a tensor image must be [C, H, W], got {tuple(item.shape)}"
            )
        if item.shape[0] not in (1, 3):
            raise ParameterError(
                f"image {index} has {item.shape[0]} channels; give RGB or grayscale images"
            )
        if not item.is_floating_point():
            # Integer pixels take the path of an image file: uint8 as they are,
            # 16-bit scaled to 8 bits by /257 (torch.uint16 exists from torch 2.3).
            if item.dtype == torch.uint8:
                array = item.detach().cpu().numpy()
            elif item.dtype == getattr(torch, "uint16", None):
                array = item.detach().cpu().to(torch.int32).numpy().astype(np.uint16)
            else:
                raise TypeError(
                    f"image {index}: give uint8 pixels (0..255), uint16 pixels (0..65535) or "
                    f"floats in [0, 1], got {item.dtype}"
                )
            array = array.transpose(1, 2, 0)
            return image_to_uint8(array[..., 0] if array.shape[2] == 1 else array, size=size).float() / 255
        x = _float_pixels(item.detach().cpu())
        if x.shape[0] == 1:
            x = x.expand(3, -1, -1)
        if size is not None and tuple(x.shape[1:]) != (size, size):
            x = _resize_center_crop_float(x, size)
        return x
    raise TypeError(
        f"image {index}: expected a file path, a PIL image, a numpy array or a tensor, "
        f"got {type(item).__name__}"
    )


def preprocess(
    images: ImageLike | Sequence[ImageLike],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    size: int | None = None,
) -> torch.Tensor:
    """A normalised float batch ``[N, 3, size, size]`` from files, PIL images, arrays or tensors.

    Files, PIL images, numpy arrays (``[H, W]`` or ``[H, W, C]``) and integer
    tensors are prepared exactly as :func:`resnet_nb.data.load_image_folder`
    prepares training images: RGB, 16-bit and float pixels scaled to 8 bits by
    their range, and with ``size`` the shorter side scaled to ``size`` and the
    centred square kept. Float tensors (``[C, H, W]`` or a batch ``[N, C, H, W]``)
    are pixels in [0, 1] (other ranges are stretched from min..max) and are
    resized the same way in float. One-channel images become RGB. Without
    ``size`` all images must share one size. Then ``(x - mean) / std`` per channel.
    """
    if size is not None:
        check_positive_int("size", size)
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        items: list[Any] = list(images)
    elif isinstance(images, (str, os.PathLike, Image.Image, np.ndarray, torch.Tensor)):
        items = [images]
    else:
        items = list(images)
    if not items:
        raise ParameterError("no images given: pass at least one file, image or tensor")
    tensors = [_to_tensor(item, i, size) for i, item in enumerate(items)]
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise ParameterError(
            f"images differ in size ({sorted(shapes)}): pass size=N to resize them"
        )
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

    ``images``: file paths, PIL images, arrays or tensors (see :func:`preprocess`);
    ``mean``/``std``/``size``: how the model's inputs were prepared in training
    (``size`` as given to :func:`resnet_nb.data.load_image_folder`). Returns one
    list per image of ``(class name, probability)``, most likely first. The model
    runs in eval mode on its own device; its mode is restored.
    """
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= len(classes):
        raise ParameterError(f"parameter k={k!r} is invalid: it must be an integer in 1..{len(classes)}")
    x = preprocess(images, mean=mean, std=std, size=size).to(model_device(model))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            logits = model(x).float().cpu()
    finally:
        model.train(was_training)
    if logits.shape[1] != len(classes):
        raise ParameterError(
            f"the model has {logits.shape[1]} outputs but {len(classes)} classes were given: "
            "pass the class names the model was trained with"
        )
    probs = logits.softmax(dim=1)
    top = probs.topk(k, dim=1)
    return [
        [(classes[int(i)], float(p)) for p, i in zip(values, indices, strict=True)]
        for values, indices in zip(top.values, top.indices, strict=True)
    ]


# --------------------------------------------------------------------------- export


def _destination(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a Path, after checking that a file can be written there."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise RunFolderError(
            f"cannot write the {what} to {path}: it is a folder; give a file name, "
            f"e.g. {path / ('model.onnx' if what == 'ONNX model' else 'model.pt')}"
        )
    if not folder.is_dir():
        why = "is a file" if folder.exists() else "does not exist"
        raise RunFolderError(
            f"cannot write the {what} to {path}: the folder {folder} {why}; "
            "create the folder first or choose another path"
        )
    if not os.access(folder, os.W_OK):
        raise RunFolderError(
            f"cannot write the {what} to {path}: the folder {folder} is not writable; "
            "choose another folder"
        )
    return path


def _write_atomically(path: Path, what: str, write: Any) -> None:
    """Write ``path`` through ``write(file)`` atomically (see :func:`state.atomic_write`).

    Any failure leaves no file behind and raises :class:`RunFolderError` naming
    the path and the fix.
    """
    try:
        atomic_write(path, write)
    except RunFolderError:
        raise
    except (OSError, RuntimeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RunFolderError(
            f"could not write the {what} to {path} ({type(exc).__name__}: "
            f"{detail.splitlines()[0] if detail else 'no detail'}); free some space or "
            "choose another folder"
        ) from None


def export_torchscript(model: nn.Module, path: str | Path, example: torch.Tensor) -> Path:
    """Trace ``model`` (in eval mode, on the CPU) with ``example`` and save it to ``path``.

    Load it back with ``torch.jit.load(path)``; no resnet_nb code is needed then.
    Raises RunFolderError when ``path`` cannot be written (no such folder, not
    writable, disk full).
    """
    path = _destination(path, "TorchScript model")
    model = model.cpu().eval()
    with torch.no_grad(), _quiet():
        traced = torch.jit.trace(model, example.cpu())
    data = traced.save_to_buffer()  # (torch.jit.save of a file warns on newer torch)
    _write_atomically(path, "TorchScript model", lambda f: f.write(data))
    return path


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence TorchScript's deprecation notices and the ONNX exporter's progress lines."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx.*")
        # torch < 2.9 (TorchScript-based exporter): strided slices of option-A shortcuts.
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        yield


def _onnx_options() -> dict[str, Any]:
    """Exporter options for a dynamic batch size on the installed torch.

    torch >= 2.9 exports through ``torch.export`` by default (``dynamo=True``) and
    takes ``dynamic_shapes``; older versions (2.5 - 2.8) default to the
    TorchScript-based exporter, which rejects ``dynamic_shapes`` and takes
    ``dynamic_axes`` instead.
    """
    params = inspect.signature(torch.onnx.export).parameters
    dynamo_default = params["dynamo"].default if "dynamo" in params else False
    if dynamo_default is True:
        options: dict[str, Any] = {
            "dynamo": True,
            "dynamic_shapes": ({0: torch.export.Dim("batch", min=1, max=4096)},),
        }
        if "external_data" in params:
            options["external_data"] = False
        return options
    options = {"dynamic_axes": {"images": {0: "batch"}, "logits": {0: "batch"}}}
    if "dynamo" in params:
        options["dynamo"] = False
    return options


def export_onnx(model: nn.Module, path: str | Path, example: torch.Tensor) -> Path:
    """Export ``model`` (eval mode, CPU) to ONNX at ``path`` with a dynamic batch size.

    The graph has one input ``images`` and one output ``logits``; the weights are
    inside the one file (no ``.data`` file beside it), so ``path`` can be copied
    alone. Works on torch 2.5 and later. Needs the ``onnx`` and ``onnxscript``
    packages (torch's exporter uses them). Raises RunFolderError when ``path``
    cannot be written.
    """
    import onnx

    path = _destination(path, "ONNX model")
    model = model.cpu().eval()
    with tempfile.TemporaryDirectory(prefix="resnet_nb_onnx_") as scratch:
        raw = Path(scratch) / "model.onnx"
        with _quiet():
            torch.onnx.export(
                model,
                (example.cpu(),),
                str(raw),
                input_names=["images"],
                output_names=["logits"],
                verbose=False,
                **_onnx_options(),
            )
        # Whatever the exporter wrote (one file, or a graph plus external data),
        # store one self-contained file.
        proto = onnx.load(str(raw), load_external_data=True)
        _write_atomically(path, "ONNX model",
                          lambda f: onnx.save_model(proto, f, save_as_external_data=False))
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
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(
            f"cannot create the export folder {folder} ({type(exc).__name__}: {exc.strerror}); "
            "choose another folder"
        ) from None
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
        modules = dict(model.named_modules())
        if layer not in modules:
            close = difflib.get_close_matches(layer, [n for n in modules if n], n=3)
            raise ParameterError(
                f"parameter layer={layer!r} is invalid: the model has no such module"
                + (f"; did you mean {', '.join(map(repr, close))}?" if close else "")
            )
        layer = modules[layer]
    if layer is None:
        layer = getattr(model, "layer4", None) or getattr(model, "layer3", None)
        if layer is None:
            raise ParameterError("pass layer=: the model has no layer4 or layer3")
    caught: dict[str, torch.Tensor] = {}

    def keep(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        caught["activations"] = output

    device = model_device(model)
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
