"""Tests of the on-device augmentation (resnet_nb.augment)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from resnet_nb.augment import Augment, cutout, normalize, random_crop_flip


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



def test_normalize_constants_are_made_once_per_device() -> None:
    from resnet_nb.augment import _affine

    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    stats = ((0.51, 0.41, 0.31), (0.21, 0.22, 0.23))  # seen by no other test
    before = _affine.cache_info()
    first = normalize(images, *stats)
    again = normalize(images, [0.51, 0.41, 0.31], [0.21, 0.22, 0.23])  # lists hash as tuples
    after = _affine.cache_info()
    assert torch.equal(first, again)
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)
