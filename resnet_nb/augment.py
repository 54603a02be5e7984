"""Batched data augmentation on the device that holds the data.

The training images live on the device as one uint8 tensor ``[N, C, H, W]``.
Each step takes a batch of it and, with a handful of tensor operations on that
device, produces the float input of the network:

1. a random crop per sample: the image is shifted by up to ``padding`` pixels
   in each direction, the uncovered border filled by reflection (default) or
   with zeros - the same thing as padding by ``padding`` and cropping back to
   ``H x W``, done as one gather instead of a pad and a loop;
2. a horizontal flip of half of the samples;
3. the conversion to float fused with normalisation, ``x * scale + shift``;
4. optionally cutout: a square per sample set to 0, which after normalisation
   is the dataset's mean colour;
5. optionally the ``channels_last`` memory format.

Every random choice comes from an explicit :class:`torch.Generator` on the
data's device, so a run is reproducible and its state can be checkpointed.

Reflection is the default fill because a zero border is an artefact a network
can learn to spot; the paper (He et al., 2015) pads with zeros, which
``padding_mode="zeros"`` reproduces.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

__all__ = ["PADDING_MODES", "random_crop_flip", "normalize", "cutout", "Augment"]

PADDING_MODES = ("reflect", "zeros")


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map indices in ``[-size + 1, 2 * size - 2]`` into ``[0, size)`` by reflection."""
    index = index.abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


def random_crop_flip(
    images: torch.Tensor,
    *,
    padding: int = 4,
    flip: bool = True,
    padding_mode: str = "reflect",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Randomly shift (crop with padding) and horizontally flip each image.

    Parameters
    ----------
    images:
        ``[N, C, H, W]`` tensor of any dtype (usually uint8), on any device.
    padding:
        The largest shift in pixels, as ``RandomCrop(H, padding=padding)``.
    flip:
        Whether to flip each image left-right with probability 1/2.
    padding_mode:
        ``"reflect"`` or ``"zeros"``: how the pixels shifted in are filled.
    generator:
        Source of the random shifts and flips (on ``images.device``).

    Returns a new tensor of the same shape, dtype and device.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode={padding_mode!r}: choose one of {PADDING_MODES}")
    n, c, h, w = images.shape
    if padding < 0 or padding >= min(h, w):
        raise ValueError(f"padding={padding} must be in [0, {min(h, w) - 1}] for {h}x{w} images")
    device = images.device
    shifts = torch.randint(-padding, padding + 1, (n, 2), device=device, generator=generator)
    rows = torch.arange(h, device=device)[None, :] + shifts[:, :1]  # [N, H]
    cols = torch.arange(w, device=device)[None, :] + shifts[:, 1:]  # [N, W]
    if flip:
        flipped = torch.rand(n, device=device, generator=generator) < 0.5
        cols = torch.where(flipped[:, None], cols.flip(1), cols)
    inside = None
    if padding_mode == "reflect":
        rows, cols = _reflect(rows, h), _reflect(cols, w)
    else:
        inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
        rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(c, device=device)[None, :, None, None]
    out = images[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
    if inside is not None:
        out = out * inside[:, None].to(out.dtype)
    return out


def normalize(
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Convert uint8 images to ``dtype`` and normalise them in one fused step.

    ``mean`` and ``std`` are per channel on the [0, 1] scale (as returned by
    :func:`resnet_nb.data.channel_stats`); the result is
    ``(images / 255 - mean) / std``.
    """
    c = images.shape[1]
    if len(mean) != c or len(std) != c:
        raise ValueError(f"mean/std have {len(mean)}/{len(std)} values for {c} channels")
    scale, shift = _affine(
        tuple(float(m) for m in mean), tuple(float(s) for s in std), images.device
    )
    return torch.addcmul(shift, images.to(torch.float32), scale).to(dtype)


@functools.lru_cache(maxsize=64)
def _affine(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``scale`` and ``shift`` of :func:`normalize`, made once per device.

    Built on the CPU and copied to ``device`` once: a fresh copy in every
    training step would make the host wait for the GPU at each step (a
    pageable host-to-device copy synchronises the stream), so nothing would
    overlap the next step's kernel launches.
    """
    c = len(mean)
    std_t = torch.tensor(std, dtype=torch.float32)
    mean_t = torch.tensor(mean, dtype=torch.float32)
    scale = (1.0 / (255.0 * std_t)).view(1, c, 1, 1)
    shift = (-mean_t / std_t).view(1, c, 1, 1)
    return scale.to(device), shift.to(device)


def cutout(
    images: torch.Tensor, *, size: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero a ``size x size`` square per image, centred anywhere in the image.

    Squares centred near the border are clipped (DeVries & Taylor, 2017).
    Apply after :func:`normalize`, so the square takes the mean colour.
    """
    if size <= 0:
        return images
    n, _, h, w = images.shape
    device = images.device
    centre = torch.rand(n, 2, device=device, generator=generator)
    cy = (centre[:, 0] * h).long()[:, None]
    cx = (centre[:, 1] * w).long()[:, None]
    ys = torch.arange(h, device=device)[None, :]
    xs = torch.arange(w, device=device)[None, :]
    half = size // 2
    in_y = (ys >= cy - half) & (ys < cy - half + size)
    in_x = (xs >= cx - half) & (xs < cx - half + size)
    keep = ~(in_y[:, :, None] & in_x[:, None, :])
    return images * keep[:, None].to(images.dtype)


class Augment:
    """The training (and evaluation) input pipeline for uint8 image batches.

    Parameters
    ----------
    mean, std:
        Per-channel statistics on the [0, 1] scale, for normalisation.
    padding:
        Maximum random shift (crop padding) in pixels; 0 disables the crop.
    flip:
        Random horizontal flips.
    padding_mode:
        ``"reflect"`` (default) or ``"zeros"``.
    cutout:
        Side of the cutout square in pixels; 0 disables it.
    channels_last:
        Return tensors in the ``channels_last`` memory format.

    Call :meth:`train` for augmented batches and :meth:`eval` for plain ones.
    """

    def __init__(
        self,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        padding: int = 4,
        flip: bool = True,
        padding_mode: str = "reflect",
        cutout: int = 0,
        channels_last: bool = False,
    ) -> None:
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode={padding_mode!r}: choose one of {PADDING_MODES}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.padding = padding
        self.flip = flip
        self.padding_mode = padding_mode
        self.cutout = cutout
        self.channels_last = channels_last

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def train(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Augment, convert and normalise a uint8 batch for a training step."""
        if self.padding > 0 or self.flip:
            images = random_crop_flip(
                images,
                padding=self.padding,
                flip=self.flip,
                padding_mode=self.padding_mode,
                generator=generator,
            )
        x = normalize(images, self.mean, self.std)
        if self.cutout > 0:
            x = cutout(x, size=self.cutout, generator=generator)
        return self._finish(x)

    def eval(self, images: torch.Tensor) -> torch.Tensor:
        """Convert and normalise a uint8 batch without augmentation."""
        return self._finish(normalize(images, self.mean, self.std))
