"""Datasets as uint8 tensors: discovery, decoding once, caching, splits, statistics.

Every loader returns an :class:`ImageData`: all images of a split as one uint8
tensor ``[N, C, H, W]`` plus int64 labels. Training code moves that tensor to the
device once and augments it there, so nothing is decoded per epoch.

Where the files come from (data root: ``root=`` argument, else ``$RESNET_NB_DATA``,
else ``./data``):

CIFAR-10, first match wins
    1. ``<root>/cifar-10-batches-py``: torchvision's original pickles.
    2. ``<root>/cifar10-jpeg.zip``: an offline copy re-encoded as JPEG, read
       straight from the zip.
    3. ``<root>/cifar10-jpeg/{train,test}/<class>/*.jpg``: the same copy, extracted.
    4. torchvision's download into ``<root>`` (when ``download=True``).
Fashion-MNIST
    ``<root>/FashionMNIST/raw/*-ubyte`` (the IDX files), else torchvision's download.

The JPEG copy is decoded once and the pixels are cached under :func:`cache_dir`
(never in the data root, which may be read-only). The cache key holds the source's
path, size and modification time, so a changed source is decoded again. A cache
folder that is full or read-only costs a decode, never a crash: one warning, and
the decoded pixels are used as they are. The original pickles and the IDX files
are read as fast as a cache would be, so they are not cached.

Image files (image folders here, single files in :mod:`resnet_nb.inference`) all
go through :func:`image_to_uint8`: RGB, 16-bit and float pixels scaled to 8 bits
by their range, optional resize of the shorter side and centre crop. Messages and
``source`` strings show paths relative to the data root or the cache folder, so a
chapter's output never shows the folders of the machine that ran it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import io
import json
import os
import pickle
import struct
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image

from resnet_nb.errors import DataCorruptError, DataNotFoundError
from resnet_nb.params import ParameterError, check_choice, check_positive_int

__all__ = [
    "CIFAR10_CLASSES",
    "FASHION_MNIST_CLASSES",
    "DataCorruptError",
    "DataNotFoundError",
    "ImageData",
    "cache_dir",
    "channel_stats",
    "data_root",
    "load_cifar10",
    "load_fashion_mnist",
    "image_to_uint8",
    "load_image_folder",
    "read_image",
    "train_val_split",
]

PathLike = Union[str, "os.PathLike[str]"]

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# Images per split; a source holding any other number is incomplete.
_CIFAR10_SIZES = {"train": 50_000, "test": 10_000}
_FASHION_MNIST_SIZES = {"train": 60_000, "test": 10_000}
_CIFAR10_BATCHES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
_FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_SPLITS = ("train", "test")

# Bump when the cached layout or the decoding changes: old cache files are ignored.
_CACHE_FORMAT = 1

# Files that file managers and archivers leave behind; skipped without a word.
_JUNK_NAMES = frozenset({"Thumbs.db", "desktop.ini", "__MACOSX"})
_IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)

# What a failed download raises: URLError, HTTPError, timeouts and PermissionError
# are OSErrors; torchvision raises RuntimeError for a bad checksum.
_DOWNLOAD_ERRORS = (OSError, RuntimeError, tarfile.TarError, zipfile.BadZipFile)
# What reading or decoding one damaged image raises.
_DECODE_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    RuntimeError,
    zipfile.BadZipFile,
    zlib.error,
    Image.DecompressionBombError,
)


def _check_tensor(name: str, value: Any, dtype: torch.dtype, layout: str, hint: str) -> None:
    """Raise unless ``value`` is a tensor of ``dtype`` with as many dimensions as ``layout``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype != dtype or value.ndim != layout.count(",") + 1:
        raise ValueError(
            f"{name} must be a {dtype} tensor {layout}; got a {value.dtype} tensor of "
            f"shape {tuple(value.shape)} ({hint})"
        )


@dataclass(eq=False, repr=False)
class ImageData:
    """A labelled image dataset held in memory as uint8 tensors.

    Attributes
    ----------
    images:
        uint8 tensor ``[N, C, H, W]``, raw pixels in 0..255.
    labels:
        int64 tensor ``[N]``, indices into ``classes``.
    classes:
        Class names; ``classes[k]`` is the name of label ``k``.
    source:
        Where the data came from, for provenance records (a path and a split).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    source: str

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        _check_tensor(
            "images",
            images,
            torch.uint8,
            "[N, C, H, W]",
            "keep raw pixels as uint8 and convert to float on the device when training",
        )
        _check_tensor("labels", labels, torch.int64, "[N]", "use labels.long()")
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels: they must agree")
        if isinstance(self.classes, str) or not all(isinstance(c, str) for c in self.classes):
            raise TypeError(f"classes must be a list of class names, got {self.classes!r}")
        self.classes = list(self.classes)
        if not self.classes:
            raise ValueError("classes must name at least one class")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(self.classes)):
            raise ValueError(
                f"labels range over {int(labels.min())}..{int(labels.max())} but there are "
                f"{len(self.classes)} classes: every label must be in 0..{len(self.classes) - 1}"
            )
        if not isinstance(self.source, str):
            raise TypeError(f"source must be a string, got {type(self.source).__name__}")

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        c, h, w = self.images.shape[1:]
        return (
            f"ImageData({len(self):,} images {c}x{h}x{w} uint8, "
            f"{len(self.classes)} classes, source={self.source!r})"
        )

    def describe(self) -> str:
        """A few lines for a chapter: size, shape, source and images per class."""
        counts = torch.bincount(self.labels, minlength=len(self.classes)).tolist()
        width = max(len(c) for c in self.classes)
        lines = [repr(self)]
        lines += [
            f"  {k:>2}  {name:<{width}}  {n:,}"
            for k, (name, n) in enumerate(zip(self.classes, counts, strict=True))
        ]
        return "\n".join(lines)

    def subset(self, index: torch.Tensor | Sequence[int]) -> ImageData:
        """The images at ``index`` (integer positions, or a boolean mask of length N).

        The result owns copies of the selected images; ``source`` is kept.
        """
        idx = index if isinstance(index, torch.Tensor) else torch.as_tensor(index)
        n = len(self)
        if idx.dtype == torch.bool:
            if idx.shape != (n,):
                raise IndexError(f"a boolean mask must have shape ({n},), got {tuple(idx.shape)}")
            idx = idx.nonzero().flatten()
        elif idx.numel() == 0:
            idx = idx.long()
        elif idx.is_floating_point() or idx.is_complex():
            raise TypeError(f"index must hold integers or booleans, got {idx.dtype}")
        if idx.ndim != 1:
            raise IndexError(f"index must be one-dimensional, got shape {tuple(idx.shape)}")
        idx = idx.long()
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise IndexError(
                f"index holds {int(idx.min())}..{int(idx.max())}; positions must lie in 0..{n - 1}"
            )
        return ImageData(self.images[idx], self.labels[idx], list(self.classes), self.source)


# --------------------------------------------------------------------------- places


def _resolve_root(root: PathLike | None) -> tuple[Path, str]:
    """The data root and a note saying where it came from."""
    if root is not None:
        return Path(root).expanduser().absolute(), "the root argument"
    env = os.environ.get("RESNET_NB_DATA")
    if env:
        return Path(env).expanduser().absolute(), "$RESNET_NB_DATA"
    return Path("data").absolute(), "the default ./data ($RESNET_NB_DATA is not set)"


def data_root(root: PathLike | None = None) -> Path:
    """The data folder: ``root`` if given, else ``$RESNET_NB_DATA``, else ``./data``."""
    return _resolve_root(root)[0]


def cache_dir() -> Path:
    """Where decoded datasets are cached: ``$RESNET_NB_CACHE``, else ``~/.cache/resnet_nb``.

    The folder is created when something is first written to it.
    """
    env = os.environ.get("RESNET_NB_CACHE")
    if env:
        return Path(env).expanduser().absolute()
    return Path.home() / ".cache" / "resnet_nb"


def _shown(path: PathLike, base: Path) -> str:
    """``path`` relative to ``base`` (POSIX form), or just its name if it lies elsewhere.

    Messages and ``source`` strings show paths this way, so the book never prints
    the folders of the machine that built it.
    """
    p = Path(path)
    try:
        return p.absolute().relative_to(base.absolute()).as_posix() or "."
    except ValueError:
        return p.name or str(p)


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name in _JUNK_NAMES


# --------------------------------------------------------------------------- cache


def _cache_path(kind: str, key: dict[str, Any]) -> Path:
    text = json.dumps({"format": _CACHE_FORMAT, "kind": kind, **key}, sort_keys=True)
    return cache_dir() / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:24]}.pt"


def _cache_name(path: Path) -> str:
    """``path`` as shown to a reader: relative to the cache folder (no machine paths)."""
    return _shown(path, cache_dir())


def _read_cache(path: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The cached (images, labels) at ``path``, or None if absent or unusable."""
    if not path.is_file():
        return None
    try:
        # mmap + clone reads the file about 3x faster than a plain load.
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        warnings.warn(
            f"ignoring unreadable cache file {_cache_name(path)} ({type(exc).__name__}); "
            "decoding again",
            stacklevel=3,
        )
        return None
    ok = (
        isinstance(saved, dict)
        and saved.get("format") == _CACHE_FORMAT
        and isinstance(saved.get("images"), torch.Tensor)
        and isinstance(saved.get("labels"), torch.Tensor)
        and saved["images"].dtype == torch.uint8
        and saved["labels"].dtype == torch.int64
        and len(saved["images"]) == len(saved["labels"])
    )
    if not ok:
        warnings.warn(
            f"ignoring cache file {_cache_name(path)} with unexpected contents; decoding again",
            stacklevel=3,
        )
        return None
    return saved["images"].clone(), saved["labels"].clone()


# Cache folders whose write failure was already reported: one warning per folder and
# process, not one per dataset split.
_CACHE_WRITE_WARNED: set[str] = set()


def _write_cache(path: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Write the cache atomically; a failure only costs a decode next time, never a crash.

    A full disk shows up as ``OSError`` (ENOSPC) from the file system or as the
    ``RuntimeError`` torch.save raises when its writer fails; either way the
    partial temp file is removed and one warning per cache folder is given.
    """
    from resnet_nb.state import atomic_save

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save({"format": _CACHE_FORMAT, "images": images, "labels": labels}, path)
    except (OSError, RuntimeError) as exc:  # a full disk: RunFolderError, an OSError
        folder = str(path.parent)
        if folder not in _CACHE_WRITE_WARNED:
            _CACHE_WRITE_WARNED.add(folder)
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            # torch's writer puts the telling part ("file write failed") on the last line.
            lines = [line for line in why.replace(str(path.parent), "<cache>").splitlines() if line]
            warnings.warn(
                f"could not write the cache file {_cache_name(path)} ({type(exc).__name__}: "
                f"{lines[-1] if lines else 'no detail'}); the data is decoded "
                "anyway and will be decoded again next time (free some space or set "
                "RESNET_NB_CACHE to a writable folder)",
                stacklevel=3,
            )


def _cached(
    kind: str, key: dict[str, Any], build: Callable[[], tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) from the cache entry for ``key``, building and storing it if absent."""
    path = _cache_path(kind, key)
    hit = _read_cache(path)
    if hit is not None:
        return hit
    images, labels = build()
    _write_cache(path, images, labels)
    return images, labels


# --------------------------------------------------------------------------- decoding


_TORCHVISION_CODEC_DEPRECATION = (
    "The image decoding and encoding capabilities of TorchVision are deprecated"
)


@functools.cache
def _jpeg_decoder() -> Callable[[bytes], torch.Tensor] | None:
    """torchvision's libjpeg decoder (about 3x faster than Pillow here), if it loads."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except (ImportError, OSError, RuntimeError):
        return None

    def decode(blob: bytes) -> torch.Tensor:
        return decode_jpeg(
            torch.frombuffer(bytearray(blob), dtype=torch.uint8), mode=ImageReadMode.RGB
        )

    return decode


def _resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Scale the shorter side to ``size``, then cut the centred ``size`` x ``size`` square."""
    w, h = img.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return img.crop((left, top, left + size, top + size))


# Pillow modes that hold more than 8 bits per pixel: one channel each.
_WIDE_MODES = frozenset({"I", "F", "I;16", "I;16L", "I;16B", "I;16N"})


def _array_to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale a 16-bit, 32-bit integer or float pixel array to uint8 by its range.

    * uint8 and bool: kept (bool becomes 0/255);
    * uint16 (16-bit PNG/TIFF): divided by 257, so 65535 becomes 255;
    * other integers (Pillow's mode "I", which 16-bit files also open as): read as
      16-bit when every value lies in 0..65535, else stretched from min..max;
    * floats (mode "F", float arrays): times 255 when every value lies in [0, 1],
      else stretched from min..max (a constant image becomes black).

    Nothing is clipped to white or black, as a plain ``convert("RGB")`` would do.
    """
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype.kind not in "uif":
        raise TypeError(f"pixels of dtype {array.dtype} are not an image")
    x = array.astype(np.float64)
    if x.size and not np.isfinite(x).all():
        raise ValueError("the image holds NaN or infinite pixel values")
    low, high = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if array.dtype.kind == "u" and array.dtype.itemsize == 2:
        x = x / 257
    elif array.dtype.kind in "iu" and low >= 0 and high <= 65535:
        x = x / 257
    elif array.dtype.kind == "f" and low >= 0 and high <= 1:
        x = x * 255
    elif high > low:
        x = (x - low) * (255 / (high - low))
    else:
        x = np.zeros_like(x)
    return np.rint(x).clip(0, 255).astype(np.uint8)


def image_to_uint8(image: Image.Image | np.ndarray, *, size: int | None = None) -> torch.Tensor:
    """One image as RGB uint8 pixels ``[3, H, W]``: the preprocessing of every image file.

    :func:`load_image_folder` (training) and :func:`resnet_nb.inference.predict`
    both go through here, so a file is seen the same way at training and at
    prediction time. ``image`` is a PIL image or a numpy array ``[H, W]`` or
    ``[H, W, C]`` (C = 1, 3 or 4; alpha is dropped). 16-bit and float pixels are
    scaled to 8 bits by their range (see :func:`_array_to_uint8`); palette,
    grayscale and CMYK images are converted to RGB. With ``size``, the shorter side
    is scaled to ``size`` (bilinear) and the centred ``size`` x ``size`` square kept.
    """
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[2] in (1, 3, 4):
            array = array[:, :, :3] if array.shape[2] != 1 else array[:, :, 0]
        elif array.ndim != 2:
            raise ValueError(
                f"a numpy image must be [H, W] or [H, W, C] with C = 1, 3 or 4, "
                f"got shape {array.shape}"
            )
        array = _array_to_uint8(array)
        rgb = Image.fromarray(np.ascontiguousarray(array)).convert("RGB")
    elif isinstance(image, Image.Image):
        if image.mode in _WIDE_MODES:
            rgb = Image.fromarray(_array_to_uint8(np.asarray(image))).convert("RGB")
        else:
            rgb = image.convert("RGB")
    else:
        raise TypeError(f"expected a PIL image or a numpy array, got {type(image).__name__}")
    if size is not None:
        rgb = _resize_center_crop(rgb, size)
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)


def _decode_image(blob: bytes, *, size: int | None = None) -> torch.Tensor:
    """Decode one encoded image to an RGB uint8 tensor ``[3, H, W]``.

    JPEGs go through torchvision's decoder when no resize is asked for (same
    pixels as Pillow, faster); anything it rejects, and every other format, goes
    through Pillow and :func:`image_to_uint8`, whose errors say what is wrong.
    """
    if size is None and blob[:3] == b"\xff\xd8\xff":
        decode = _jpeg_decoder()
        if decode is not None:
            try:
                return decode(blob)
            except RuntimeError:
                pass
    with Image.open(io.BytesIO(blob)) as img:
        img.load()
        return image_to_uint8(img, size=size)


def read_image(path: PathLike, *, size: int | None = None) -> torch.Tensor:
    """Decode one image file to RGB uint8 ``[3, H, W]`` exactly as :func:`load_image_folder` does.

    Raises DataNotFoundError for a missing file, ParameterError for a folder and
    DataCorruptError for a file that is not a readable image (also for a
    decompression bomb: an image larger than ``PIL.Image.MAX_IMAGE_PIXELS``).
    Messages name the file as given.
    """
    if size is not None:
        check_positive_int("size", size)
    file = Path(path)
    if file.is_dir():
        raise ParameterError(
            f"{file} is a folder, not an image file: pass image files, "
            "or load a folder of class subfolders with resnet_nb.data.load_image_folder"
        )
    if not file.is_file():
        raise DataNotFoundError(f"image file {file} does not exist: check the path")
    try:
        blob = file.read_bytes()
    except OSError as exc:
        raise DataCorruptError(
            f"{file} cannot be read ({type(exc).__name__}: {exc.strerror}): check its permissions"
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=_TORCHVISION_CODEC_DEPRECATION, category=DeprecationWarning
            )
            return _decode_image(blob, size=size)
    except Image.DecompressionBombError as exc:
        raise DataCorruptError(
            f"{file} is refused as a possible decompression bomb ({exc}); if you trust "
            "the file, raise PIL.Image.MAX_IMAGE_PIXELS"
        ) from None
    except _DECODE_ERRORS as exc:
        raise DataCorruptError(
            f"{file} is not a readable image ({type(exc).__name__}: {exc}): "
            "remove or replace it"
        ) from None


def _decode_all(
    names: Sequence[str],
    read: Callable[[str], bytes],
    *,
    size: int | None,
    expected: tuple[int, int, int] | None,
    corrupt: Callable[[str, str], Exception],
    mismatch: Callable[[str, tuple[int, ...], str, tuple[int, ...]], Exception],
) -> torch.Tensor:
    """Decode every image in ``names`` into one uint8 tensor ``[N, 3, H, W]``.

    ``read(name)`` gives the encoded bytes. A file that cannot be read or decoded
    raises ``corrupt(name, reason)``; an image whose shape differs from
    ``expected`` (or, if None, from the first image) raises
    ``mismatch(name, shape, reference_name, reference_shape)``.
    """
    out: torch.Tensor | None = None
    reference = ""
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image codecs and warns on every call;
        # when they are gone, _jpeg_decoder() returns None and Pillow does the work.
        warnings.filterwarnings(
            "ignore", message=_TORCHVISION_CODEC_DEPRECATION, category=DeprecationWarning
        )
        for i, name in enumerate(names):
            try:
                img = _decode_image(read(name), size=size)
            except _DECODE_ERRORS as exc:
                raise corrupt(name, f"{type(exc).__name__}: {exc}") from exc
            if out is None:
                shape = expected if expected is not None else tuple(img.shape)
                out = torch.empty((len(names), *shape), dtype=torch.uint8)
                reference = "the expected size" if expected is not None else name
            if img.shape != out.shape[1:]:
                raise mismatch(name, tuple(img.shape), reference, tuple(out.shape[1:]))
            out[i] = img
    if out is None:
        raise ValueError("no images to decode")
    return out


def _hw(shape: tuple[int, ...]) -> str:
    return f"{shape[-1]}x{shape[-2]} (WxH)"


# --------------------------------------------------------------------------- not found / download


def _torchvision_download(dataset: str, root: Path) -> None:
    """Download ``dataset`` ('cifar10' or 'fashion_mnist') into ``root`` with torchvision."""
    from torchvision import datasets

    if dataset == "cifar10":
        datasets.CIFAR10(root=str(root), train=True, download=True)
    elif dataset == "fashion_mnist":
        datasets.FashionMNIST(root=str(root), train=True, download=True)
    else:
        raise ValueError(f"unknown dataset {dataset!r}")


def _try_download(dataset: str, root: Path) -> str | None:
    """Download into ``root``; None on success, else a line saying why it failed."""
    try:
        _torchvision_download(dataset, root)
    except _DOWNLOAD_ERRORS as exc:
        return f"torchvision's download into {root} failed: {type(exc).__name__}: {exc}"
    return None


def _not_found(
    name: str,
    root: Path,
    origin: str,
    tried: Sequence[tuple[Path, str]],
    download_note: str,
    call: str,
) -> DataNotFoundError:
    width = max(len(str(p)) for p, _ in tried)
    looked = "\n".join(f"  {str(p):<{width}}  ({what})" for p, what in tried)
    return DataNotFoundError(
        f"{name} was not found.\nData root: {root} (from {origin}).\nLooked for:\n{looked}\n"
        f"{download_note}\n"
        "Fix it in one of two ways:\n"
        "  1. set RESNET_NB_DATA to a folder that holds the data, e.g.\n"
        "       export RESNET_NB_DATA=/path/to/data   (or pass root=...)\n"
        f"  2. go online and call {call} with download=True, so torchvision downloads it\n"
        f"     into {root}"
    )


# --------------------------------------------------------------------------- CIFAR-10


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, lists and dicts only: the CIFAR-10 batches need no more."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: not part of a CIFAR-10 batch"
            )
        if module.startswith("numpy.") and module.endswith("multiarray"):
            module = "numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray"
        return getattr(importlib.import_module(module), name)


def _check_count(where: str, split: str, found: int, expected: int, fix: str) -> None:
    if found != expected:
        raise DataCorruptError(
            f"{where}: the {split} split holds {found:,} images, expected {expected:,}. "
            f"The copy is incomplete or not the dataset expected: {fix}"
        )


def _cifar10_from_batches(folder: Path, split: str, base: Path) -> ImageData:
    shown = _shown(folder, base)
    fix = f"delete {shown} in the data root and download it again (or remove it to use the next source)"
    images, labels = [], []
    for name in _CIFAR10_BATCHES[split]:
        file = folder / name
        if not file.is_file():
            raise DataCorruptError(f"{shown} lacks {name}: {fix}")
        try:
            with open(file, "rb") as f:
                batch = _ArrayUnpickler(f, encoding="bytes").load()
            data, batch_labels = batch[b"data"], batch[b"labels"]
        except (
            OSError,
            EOFError,
            pickle.UnpicklingError,
            KeyError,
            TypeError,
            ValueError,
            IndexError,
        ) as exc:
            raise DataCorruptError(
                f"{shown}/{name} is not a readable CIFAR-10 batch ({exc}): {fix}"
            ) from exc
        if not (
            isinstance(data, np.ndarray)
            and data.dtype == np.uint8
            and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32
            and len(batch_labels) == len(data)
        ):
            raise DataCorruptError(
                f"{shown}/{name} does not hold uint8 rows of 3x32x32 pixels with one label each: "
                f"{fix}"
            )
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
        labels.append(torch.as_tensor(batch_labels, dtype=torch.int64))
    images_t, labels_t = torch.cat(images), torch.cat(labels)
    _check_count(shown, split, len(images_t), _CIFAR10_SIZES[split], fix)
    if int(labels_t.min()) < 0 or int(labels_t.max()) > 9:
        raise DataCorruptError(f"{shown}: labels outside 0..9: {fix}")
    return ImageData(
        images_t, labels_t, list(CIFAR10_CLASSES), f"CIFAR-10 {split}, original: {shown}"
    )


def _cifar10_members(
    by_class: dict[str, list[str]], split: str, where: str, fix: str
) -> tuple[list[str], torch.Tensor]:
    """Check a split's class folders and counts; the member names and their labels."""
    found = sorted(by_class)
    if not found:
        raise DataCorruptError(f"{where} holds no {split}/<class>/ images: {fix}")
    if found != list(CIFAR10_CLASSES):
        missing = sorted(set(CIFAR10_CLASSES) - set(found))
        extra = sorted(set(found) - set(CIFAR10_CLASSES))
        raise DataCorruptError(
            f"{where}: the {split} split's class folders do not match CIFAR-10's "
            f"{', '.join(CIFAR10_CLASSES)} (missing: {', '.join(missing) or 'none'}; "
            f"unexpected: {', '.join(extra) or 'none'}). This is not the CIFAR-10 copy "
            "this loader reads."
        )
    per_class = _CIFAR10_SIZES[split] // len(CIFAR10_CLASSES)
    wrong = {c: len(by_class[c]) for c in found if len(by_class[c]) != per_class}
    if wrong:
        counts = ", ".join(f"{c}: {n:,}" for c, n in wrong.items())
        raise DataCorruptError(
            f"{where}: the {split} split is incomplete: expected {per_class:,} images per class "
            f"({_CIFAR10_SIZES[split]:,} in all), found {counts}. {fix}"
        )
    names = [m for c in found for m in sorted(by_class[c])]
    labels = torch.arange(len(found)).repeat_interleave(
        torch.tensor([len(by_class[c]) for c in found])
    )
    return names, labels


def _decode_cifar10(
    names: Sequence[str], read: Callable[[str], bytes], where: Callable[[str], str], fix: str
) -> torch.Tensor:
    """Decode CIFAR-10 JPEGs; errors name the image as ``where(name)`` and end with ``fix``."""
    return _decode_all(
        names,
        read,
        size=None,
        expected=(3, 32, 32),
        corrupt=lambda name, why: DataCorruptError(f"{where(name)} cannot be read ({why}); {fix}"),
        mismatch=lambda name, shape, _ref, _want: DataCorruptError(
            f"{where(name)} is {_hw(shape)}, expected 32x32 RGB; {fix}"
        ),
    )


def _cifar10_from_zip(path: Path, split: str, base: Path) -> ImageData:
    shown = _shown(path, base)
    fix = f"delete {shown} in the data root and fetch a fresh copy."

    def build() -> tuple[torch.Tensor, torch.Tensor]:
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DataCorruptError(
                f"{shown} is not a readable zip file ({type(exc).__name__}); it is damaged or "
                f"truncated: {fix}"
            ) from exc
        with archive:
            by_class: dict[str, list[str]] = {}
            for member in archive.namelist():
                parts = member.split("/")
                if member.endswith("/") or len(parts) < 3 or any(_is_junk(p) for p in parts):
                    continue
                if parts[-3] == split:
                    by_class.setdefault(parts[-2], []).append(member)
            names, labels = _cifar10_members(by_class, split, shown, fix)
            images = _decode_cifar10(
                names, archive.read, lambda name: f"{shown}: member {name}", fix
            )
        return images, labels

    stat = path.stat()
    key = {
        "path": str(path.resolve()),
        "bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "split": split,
    }
    images, labels = _cached("cifar10-jpeg-zip", key, build)
    return ImageData(
        images, labels, list(CIFAR10_CLASSES), f"CIFAR-10 {split}, JPEG copy: {shown}"
    )


def _cifar10_from_folder(folder: Path, split: str, base: Path) -> ImageData:
    shown = _shown(folder, base)
    fix = f"replace {shown} in the data root with a complete copy."
    top = folder / split
    by_class = _scan_class_tree(top, base) if top.is_dir() else {}
    names, labels = _cifar10_members(
        {c: [str(p) for p in files] for c, files in by_class.items()}, split, shown, fix
    )

    def build() -> tuple[torch.Tensor, torch.Tensor]:
        return (
            _decode_cifar10(
                names, lambda name: Path(name).read_bytes(), lambda n: _shown(n, base), fix
            ),
            labels,
        )

    key = {"path": str(top.resolve()), "files": _fingerprint(names), "split": split}
    images, labels = _cached("cifar10-jpeg-folder", key, build)
    return ImageData(
        images, labels, list(CIFAR10_CLASSES), f"CIFAR-10 {split}, JPEG copy: {shown}"
    )


def load_cifar10(
    split: str = "train", *, root: PathLike | None = None, download: bool = True
) -> ImageData:
    """Load a CIFAR-10 split as uint8 images ``[N, 3, 32, 32]`` (N = 50,000 or 10,000).

    Sources, first match wins: ``<root>/cifar-10-batches-py`` (torchvision's
    original files), ``<root>/cifar10-jpeg.zip``, ``<root>/cifar10-jpeg/`` (an
    offline JPEG copy, zipped or extracted), then torchvision's download into
    ``<root>`` if ``download`` is true. ``source`` on the result says which was used.

    The JPEG copy is a lossy re-encoding: accuracy measured on it is not comparable
    with published CIFAR-10 numbers.

    Raises DataNotFoundError when no source is present and the download is off or
    fails, and DataCorruptError when a source is damaged or incomplete.
    """
    check_choice("split", split, _SPLITS)
    base, origin = _resolve_root(root)
    batches, archive, folder = (
        base / "cifar-10-batches-py",
        base / "cifar10-jpeg.zip",
        base / "cifar10-jpeg",
    )
    if batches.is_dir():
        return _cifar10_from_batches(batches, split, base)
    if archive.is_file():
        return _cifar10_from_zip(archive, split, base)
    if folder.is_dir():
        return _cifar10_from_folder(folder, split, base)
    if download:
        failure = _try_download("cifar10", base)
        if failure is None and batches.is_dir():
            return _cifar10_from_batches(batches, split, base)
        note = failure or f"torchvision's download finished but {batches} is still missing."
    else:
        note = "download=False, so no download was tried."
    tried = [
        (batches, "torchvision's original files"),
        (archive, "offline JPEG copy, zipped"),
        (folder, "offline JPEG copy, extracted: train/ and test/ with one folder per class"),
    ]
    raise _not_found("CIFAR-10", base, origin, tried, note, "load_cifar10(...)") from None


# --------------------------------------------------------------------------- Fashion-MNIST


def _read_idx(path: Path, ndim: int, base: Path) -> torch.Tensor:
    """Read an IDX file of unsigned bytes with ``ndim`` dimensions."""
    data = path.read_bytes()
    shown = _shown(path, base)
    fix = f"delete {shown} in the data root and download it again."
    if len(data) < 4 + 4 * ndim or data[:2] != b"\0\0" or data[2] != 0x08 or data[3] != ndim:
        raise DataCorruptError(
            f"{shown} is not an IDX file of unsigned bytes with {ndim} dimension(s) "
            f"(header {data[:4].hex() or 'empty'}): {fix}"
        )
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise DataCorruptError(
            f"{shown}: the header promises {'x'.join(map(str, dims))} = {expected:,} bytes but "
            f"the file holds {len(data) - offset:,}; it is truncated or damaged: {fix}"
        )
    return torch.frombuffer(bytearray(data[offset:]), dtype=torch.uint8).reshape(dims)


def load_fashion_mnist(
    split: str = "train", *, root: PathLike | None = None, download: bool = True
) -> ImageData:
    """Load a Fashion-MNIST split as uint8 images ``[N, 1, 28, 28]`` (N = 60,000 or 10,000).

    Reads the IDX files in ``<root>/FashionMNIST/raw/`` (the layout torchvision
    downloads to); if they are missing and ``download`` is true, torchvision
    downloads them there first.
    """
    check_choice("split", split, _SPLITS)
    base, origin = _resolve_root(root)
    raw = base / "FashionMNIST" / "raw"
    files = [raw / name for name in _FASHION_MNIST_FILES[split]]
    if not all(f.is_file() for f in files):
        if download:
            note = (
                _try_download("fashion_mnist", base)
                or "torchvision's download finished but the files are still missing."
            )
        else:
            note = "download=False, so no download was tried."
        if not all(f.is_file() for f in files):
            tried = [(f, "present" if f.is_file() else "missing") for f in files]
            raise _not_found(
                "Fashion-MNIST", base, origin, tried, note, "load_fashion_mnist(...)"
            ) from None
    images, labels = _read_idx(files[0], 3, base), _read_idx(files[1], 1, base)
    shown = _shown(raw, base)
    fix = f"delete {shown} in the data root and download it again."
    if tuple(images.shape[1:]) != (28, 28):
        raise DataCorruptError(
            f"{_shown(files[0], base)} holds {'x'.join(map(str, images.shape[1:]))} images, "
            f"expected 28x28: {fix}"
        )
    if len(labels) != len(images):
        raise DataCorruptError(
            f"{shown}: {len(images):,} images but {len(labels):,} labels: {fix}"
        )
    _check_count(shown, split, len(images), _FASHION_MNIST_SIZES[split], fix)
    if int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise DataCorruptError(f"{_shown(files[1], base)} holds labels above 9: {fix}")
    return ImageData(
        images.unsqueeze(1),
        labels.long(),
        list(FASHION_MNIST_CLASSES),
        f"Fashion-MNIST {split}: {shown}",
    )


# --------------------------------------------------------------------------- image folders


def _scan_class_tree(top: Path, base: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image files below ``top/<class>/``, junk files skipped.

    Messages show paths relative to ``base``.

    Raises ValueError for an empty class folder or images lying outside class folders.
    """
    by_class: dict[str, list[Path]] = {}
    loose: list[Path] = []
    for entry in sorted(top.iterdir()):
        if _is_junk(entry.name):
            continue
        if entry.is_dir():
            files = sorted(
                p
                for p in entry.rglob("*")
                if p.is_file() and not any(_is_junk(part) for part in p.relative_to(entry).parts)
            )
            if not files:
                raise ValueError(
                    f"class folder {_shown(entry, base)} holds no images: add images to it or "
                    "remove it"
                )
            by_class[entry.name] = files
        elif entry.suffix.lower() in _IMAGE_SUFFIXES:
            loose.append(entry)
    if loose:
        raise ValueError(
            f"{_shown(top, base)} holds images outside class folders (e.g. {loose[0].name}): "
            "put every image "
            "in a subfolder named after its class, e.g. cats/x.jpg, dogs/y.jpg"
        )
    return by_class


def _fingerprint(files: Sequence[str]) -> str:
    """A digest of each file's name, size and modification time."""
    digest = hashlib.sha256()
    for name in files:
        stat = os.stat(name)
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def load_image_folder(path: PathLike, *, size: int | None = None) -> ImageData:
    """Load a folder laid out like torchvision's ImageFolder: one subfolder per class.

    Class labels follow the sorted subfolder names. Every image goes through
    :func:`image_to_uint8`: converted to RGB, 16-bit and float pixels scaled to 8
    bits by their range. With ``size``, each image's shorter side is scaled to
    ``size`` and the centred ``size`` x ``size`` square is kept (the same as
    :func:`resnet_nb.inference.predict` does with ``size``); without it, all
    images must already share one size. Hidden files and Thumbs.db/desktop.ini are skipped; any other
    file must be a readable image. Decoded pixels are cached (see :func:`cache_dir`).

    Raises DataNotFoundError if ``path`` does not exist, ValueError for a layout
    that cannot work (fewer than two classes, an empty class folder, mixed sizes
    without ``size``) and DataCorruptError naming a file that is not a readable image.
    Messages and ``source`` show paths relative to the data root (when the folder
    lies under it) or starting at the folder's name, never the machine's full path.
    """
    if size is not None:
        check_positive_int("size", size)
    folder = Path(path).expanduser().absolute()
    if not folder.exists():
        raise DataNotFoundError(f"image folder {path} does not exist: check the path")
    # Paths in messages and in `source`: relative to the data root when the folder
    # lies under it, else starting at the folder's own name.
    root = data_root()
    base = root if folder != root and folder.is_relative_to(root) else folder.parent
    shown = _shown(folder, base)
    if not folder.is_dir():
        raise ValueError(
            f"{shown} is a file; load_image_folder needs a folder with one subfolder per class"
        )
    by_class = _scan_class_tree(folder, base)
    if len(by_class) < 2:
        found = ", ".join(by_class) or "none"
        raise ValueError(
            f"{shown} has {len(by_class)} class folder(s) ({found}); a classification "
            "dataset needs at least two, e.g. cats/ and dogs/ each holding images"
        )
    classes = sorted(by_class)
    names = [str(p) for c in classes for p in by_class[c]]
    labels = torch.arange(len(classes)).repeat_interleave(
        torch.tensor([len(by_class[c]) for c in classes])
    )

    def mismatch(
        name: str, shape: tuple[int, ...], ref: str, ref_shape: tuple[int, ...]
    ) -> Exception:
        return ValueError(
            f"images differ in size: {_shown(name, base)} is {_hw(shape)} but "
            f"{_shown(ref, base)} is {_hw(ref_shape)}; "
            "pass size=N to scale and centre-crop every image to N x N"
        )

    def corrupt(name: str, why: str) -> DataCorruptError:
        why = why.replace(str(base) + os.sep, "")
        return DataCorruptError(
            f"{_shown(name, base)} is not a readable image ({why}): remove or replace it"
        )

    def build() -> tuple[torch.Tensor, torch.Tensor]:
        images = _decode_all(
            names,
            lambda name: Path(name).read_bytes(),
            size=size,
            expected=None,
            corrupt=corrupt,
            mismatch=mismatch,
        )
        return images, labels

    key = {"path": str(folder.resolve()), "files": _fingerprint(names), "size": size}
    images, labels = _cached("image-folder", key, build)
    return ImageData(
        images, labels, classes, f"image folder {shown}" + (f", resized to {size}" if size else "")
    )


# --------------------------------------------------------------------------- splits and statistics


def train_val_split(
    data: ImageData, *, val_size: int = 5000, seed: int = 0
) -> tuple[ImageData, ImageData]:
    """Split ``data`` at random into (train, validation), reproducibly for a given seed.

    The validation split holds ``val_size`` images, the train split the rest; both
    keep the original order of the images they hold. The same seed gives the same
    split on every run (a seeded ``torch.Generator``, independent of global RNG state).
    """
    if not isinstance(data, ImageData):
        raise TypeError(f"data must be an ImageData, got {type(data).__name__}")
    n = len(data)
    if isinstance(val_size, bool) or not isinstance(val_size, int) or not 0 < val_size < n:
        raise ParameterError(
            f"parameter val_size={val_size!r} is invalid: it must be an integer with "
            f"0 < val_size < {n:,} (the number of images)"
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ParameterError(f"parameter seed={seed!r} is invalid: it must be an integer, e.g. 0")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:val_size].sort().values, order[val_size:].sort().values
    train, val = data.subset(train_idx), data.subset(val_idx)
    train.source = f"{data.source}; train part, {n - val_size:,} of {n:,} (seed {seed})"
    val.source = f"{data.source}; validation part, {val_size:,} of {n:,} (seed {seed})"
    return train, val


def channel_stats(
    data: ImageData | torch.Tensor, *, chunk: int = 4096
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of the pixels, on the [0, 1] scale.

    Compute it on the train split and normalise every split with it. The pixels
    are counted into one 256-bin histogram per channel, ``chunk`` images at a
    time, so memory stays small and the sums are exact.
    """
    images = data.images if isinstance(data, ImageData) else data
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError("channel_stats needs an ImageData or a uint8 tensor [N, C, H, W]")
    if images.numel() == 0:
        raise ValueError("channel_stats needs at least one image")
    check_positive_int("chunk", chunk)
    channels = images.shape[1]
    hist = torch.zeros(channels, 256, dtype=torch.int64)
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk]
        for c in range(channels):
            hist[c] += torch.bincount(block[:, c].reshape(-1), minlength=256)
    levels = torch.arange(256, dtype=torch.float64) / 255
    counts = hist.double()
    total = counts.sum(dim=1)
    mean = counts @ levels / total
    var = counts @ (levels * levels) / total - mean * mean
    return tuple(mean.tolist()), tuple(var.clamp_min(0).sqrt().tolist())
