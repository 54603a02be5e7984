"""Tests for resnet_nb.data: discovery, errors, caching, splits and statistics.

Unit tests build tiny datasets in tmp_path. The integration tests at the end read
the real offline copies when $RESNET_NB_DATA points at a folder holding them.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import struct
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_nb import data as D
from resnet_nb.data import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    DataCorruptError,
    DataNotFoundError,
    ImageData,
    cache_dir,
    channel_stats,
    data_root,
    load_cifar10,
    load_fashion_mnist,
    load_image_folder,
    train_val_split,
)
from resnet_nb.params import ParameterError

REAL_DATA = os.environ.get("RESNET_NB_DATA")
REAL_ZIP = Path(REAL_DATA, "cifar10-jpeg.zip").absolute() if REAL_DATA else None
REAL_FMNIST = Path(REAL_DATA, "FashionMNIST", "raw") if REAL_DATA else None

# Tiny CIFAR-10 copies: 2 train and 1 test image per class.
TINY = {"train": 2, "test": 1}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test: its own cache, no data root from the environment, no network."""
    monkeypatch.setenv("RESNET_NB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RESNET_NB_DATA", raising=False)

    def no_network(dataset: str, root: Path) -> None:
        raise AssertionError(f"a test tried to download {dataset} into {root}")

    monkeypatch.setattr(D, "_torchvision_download", no_network)


@pytest.fixture
def tiny_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the loaders expect the tiny datasets' sizes."""
    monkeypatch.setattr(D, "_CIFAR10_SIZES", {s: n * 10 for s, n in TINY.items()})
    monkeypatch.setattr(D, "_FASHION_MNIST_SIZES", {"train": 6, "test": 3})


# --------------------------------------------------------------------------- builders


def colour(label: int, index: int, shift: int = 0) -> tuple[int, int, int]:
    """A flat colour that encodes (label, index): JPEG keeps flat colours within a few levels."""
    return (20 * label + 10 + shift, 60 + 40 * index, 200 - shift)


def jpeg_bytes(rgb: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> bytes:
    """A flat-colour JPEG, padded after its end marker to 1,000 bytes so sizes never vary."""
    buf = io.BytesIO()
    Image.new("RGB", size, rgb).save(buf, format="JPEG", quality=95)
    return buf.getvalue().ljust(1000, b"\0")


def cifar_members(shift: int = 0, classes: tuple[str, ...] = CIFAR10_CLASSES) -> dict[str, bytes]:
    return {
        f"{split}/{name}/{i:04d}.jpg": jpeg_bytes(colour(label, i, shift))
        for split, per_class in TINY.items()
        for label, name in enumerate(classes)
        for i in range(per_class)
    }


def write_zip(path: Path, members: dict[str, bytes], prefix: str = "cifar10-jpeg/") -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, blob in members.items():
            zf.writestr(prefix + name, blob)
    return path


def write_folder(folder: Path, members: dict[str, bytes]) -> Path:
    for name, blob in members.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)
    return folder


def write_batches(folder: Path, seed: int = 0) -> dict[str, tuple[np.ndarray, list[int]]]:
    """A tiny cifar-10-batches-py: 4 images per train batch, 10 in the test batch."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    written = {}
    for name, n in [*((f"data_batch_{i}", 4) for i in range(1, 6)), ("test_batch", 10)]:
        pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": pixels,
            b"filenames": [b"x.png"] * n,
        }
        (folder / name).write_bytes(pickle.dumps(batch))
        written[name] = (pixels, labels)
    (folder / "batches.meta").write_bytes(
        pickle.dumps({b"label_names": [c.encode() for c in CIFAR10_CLASSES]})
    )
    return written


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_fashion(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(1)
    raw = root / "FashionMNIST" / "raw"
    out = {}
    for split, n in (("train", 6), ("test", 3)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        img_name, lab_name = D._FASHION_MNIST_FILES[split]
        write_idx(raw / img_name, images)
        write_idx(raw / lab_name, labels)
        out[split] = (images, labels)
    return out


def assert_colours(data: ImageData, shift: int = 0) -> None:
    """Every image is the flat colour its label and position within the class encode."""
    per_class = len(data) // 10
    for k in range(len(data)):
        label = int(data.labels[k])
        want = torch.tensor(colour(label, k % per_class, shift), dtype=torch.float32)
        got = data.images[k].float().mean(dim=(1, 2))
        assert torch.allclose(got, want, atol=3), (k, label, got, want)


# --------------------------------------------------------------------------- places


def test_data_root_prefers_argument_then_environment_then_cwd(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert data_root() == tmp_path / "data"
    monkeypatch.setenv("RESNET_NB_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root("rel") == tmp_path / "rel"


def test_cache_dir_prefers_environment_then_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("RESNET_NB_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "resnet_nb"
    assert not (tmp_path / "home").exists(), "asking for the folder must not create it"


# --------------------------------------------------------------------------- CIFAR-10 sources


@pytest.mark.usefixtures("tiny_sizes")
def test_zip_copy_loads_with_cifar_labels(tmp_path: Path) -> None:
    write_zip(tmp_path / "cifar10-jpeg.zip", cifar_members())
    train = load_cifar10("train", root=tmp_path, download=False)
    test = load_cifar10("test", root=tmp_path, download=False)
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (10, 3, 32, 32)
    assert train.classes == list(CIFAR10_CLASSES) == sorted(CIFAR10_CLASSES)
    assert train.labels.tolist() == [c for c in range(10) for _ in range(2)]
    assert "cifar10-jpeg.zip" in train.source and "train" in train.source
    assert_colours(train)
    assert_colours(test)


@pytest.mark.usefixtures("tiny_sizes")
def test_pillow_fallback_gives_the_same_pixels(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_zip(tmp_path / "cifar10-jpeg.zip", cifar_members())
    fast = load_cifar10("test", root=tmp_path, download=False)
    monkeypatch.setenv("RESNET_NB_CACHE", str(tmp_path / "other-cache"))
    monkeypatch.setattr(D, "_jpeg_decoder", lambda: None)
    assert torch.equal(load_cifar10("test", root=tmp_path, download=False).images, fast.images)


@pytest.mark.usefixtures("tiny_sizes")
def test_zip_without_top_folder_and_with_junk_loads(tmp_path: Path) -> None:
    members = cifar_members()
    members["train/airplane/.DS_Store"] = b"\0junk"
    members["__MACOSX/train/airplane/._0000.jpg"] = b"\0junk"
    write_zip(tmp_path / "cifar10-jpeg.zip", members, prefix="")
    assert len(load_cifar10("train", root=tmp_path, download=False)) == 20


@pytest.mark.usefixtures("tiny_sizes")
def test_source_preference_batches_then_zip_then_folder(tmp_path: Path) -> None:
    written = write_batches(tmp_path / "cifar-10-batches-py")
    write_zip(tmp_path / "cifar10-jpeg.zip", cifar_members(shift=0))
    write_folder(tmp_path / "cifar10-jpeg", cifar_members(shift=5))

    original = load_cifar10("test", root=tmp_path, download=False)
    assert "original" in original.source
    pixels, labels = written["test_batch"]
    assert torch.equal(original.images, torch.from_numpy(pixels.reshape(-1, 3, 32, 32)))
    assert original.labels.tolist() == labels

    (tmp_path / "cifar-10-batches-py").rename(tmp_path / "moved")
    zipped = load_cifar10("test", root=tmp_path, download=False)
    assert zipped.source.endswith("cifar10-jpeg.zip")
    assert_colours(zipped, shift=0)

    (tmp_path / "cifar10-jpeg.zip").unlink()
    extracted = load_cifar10("test", root=tmp_path, download=False)
    assert extracted.source.endswith("cifar10-jpeg")
    assert_colours(extracted, shift=5)


@pytest.mark.usefixtures("tiny_sizes")
def test_original_batches_train_split_concatenates_five_batches(tmp_path: Path) -> None:
    written = write_batches(tmp_path / "cifar-10-batches-py")
    train = load_cifar10("train", root=tmp_path, download=False)
    want = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert torch.equal(train.images, torch.from_numpy(want.reshape(-1, 3, 32, 32)))
    assert train.labels.dtype == torch.int64 and len(train) == 20


@pytest.mark.usefixtures("tiny_sizes")
def test_batches_that_run_code_when_unpickled_are_refused(tmp_path: Path) -> None:
    write_batches(tmp_path / "cifar-10-batches-py")

    class Payload:
        def __reduce__(self) -> tuple:
            return (os.system, ("echo pwned",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(
        pickle.dumps({b"data": Payload()})
    )
    with pytest.raises(DataCorruptError, match="test_batch.*refusing to load"):
        load_cifar10("test", root=tmp_path, download=False)


@pytest.mark.usefixtures("tiny_sizes")
def test_batch_with_labels_outside_cifar10_is_reported(tmp_path: Path) -> None:
    write_batches(tmp_path / "cifar-10-batches-py")
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch = pickle.loads(path.read_bytes())
    batch[b"labels"][3] = 10
    path.write_bytes(pickle.dumps(batch))
    with pytest.raises(DataCorruptError, match="labels outside 0..9"):
        load_cifar10("test", root=tmp_path, download=False)


@pytest.mark.usefixtures("tiny_sizes")
def test_incomplete_batches_folder_says_which_file_is_missing(tmp_path: Path) -> None:
    write_batches(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataCorruptError, match="lacks data_batch_3"):
        load_cifar10("train", root=tmp_path, download=False)


@pytest.mark.usefixtures("tiny_sizes")
def test_download_is_used_when_nothing_is_present(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = []

    def fake_download(dataset: str, root: Path) -> None:
        calls.append((dataset, root))
        write_batches(root / "cifar-10-batches-py")

    monkeypatch.setattr(D, "_torchvision_download", fake_download)
    data = load_cifar10("test", root=tmp_path)
    assert calls == [("cifar10", tmp_path)]
    assert "original" in data.source and len(data) == 10


def test_offline_with_nothing_present_raises_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def offline(dataset: str, root: Path) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(D, "_torchvision_download", offline)
    monkeypatch.setenv("RESNET_NB_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError) as info:
        load_cifar10("train")
    err = info.value
    assert isinstance(err, FileNotFoundError)
    assert err.__cause__ is None and err.__suppress_context__
    text = str(err)
    listed = [line.split()[0] for line in text.splitlines() if line.startswith(f"  {tmp_path}")]
    assert listed == [
        str(tmp_path / p) for p in ("cifar-10-batches-py", "cifar10-jpeg.zip", "cifar10-jpeg")
    ]
    assert "$RESNET_NB_DATA" in text  # where the root came from
    assert "URLError" in text and "name resolution" in text
    assert "export RESNET_NB_DATA=" in text and "download=True" in text


def test_download_false_does_not_try_the_network(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="download=False, so no download was tried") as info:
        load_cifar10("test", root=tmp_path, download=False)
    assert "the root argument" in str(info.value)


def test_unknown_split_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="'train', 'test'"):
        load_cifar10("val", root=tmp_path)


# --------------------------------------------------------------------------- CIFAR-10 damage


@pytest.mark.usefixtures("tiny_sizes")
@pytest.mark.parametrize("damage", ["not a zip", "truncated"])
def test_unreadable_zip_is_reported_as_corrupt(tmp_path: Path, damage: str) -> None:
    path = write_zip(tmp_path / "cifar10-jpeg.zip", cifar_members())
    if damage == "not a zip":
        path.write_bytes(b"<html>404 not found</html>")
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataCorruptError, match="not a readable zip file.*delete") as info:
        load_cifar10("train", root=tmp_path, download=False)
    text = str(info.value)
    assert text.startswith("cifar10-jpeg.zip is not") and str(tmp_path) not in text, (
        "paths are shown relative to the data root, never the machine's folders"
    )


@pytest.mark.usefixtures("tiny_sizes")
def test_bad_crc_names_the_member(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "cifar10-jpeg.zip", cifar_members())
    blob = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("cifar10-jpeg/train/cat/0001.jpg")
    # Stored members: data starts after the 30-byte local header, the name and the extra field.
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    blob[start + 200] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(DataCorruptError, match="train/cat/0001.jpg") as err:
        load_cifar10("train", root=tmp_path, download=False)
    text = str(err.value)
    assert text.startswith("cifar10-jpeg.zip: member") and "CRC" in text
    assert str(tmp_path) not in text


@pytest.mark.usefixtures("tiny_sizes")
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncated", r"test/dog/0000\.jpg cannot be read.*fresh copy"),
        ("wrong size", r"test/dog/0000\.jpg is 64x48.*expected 32x32.*fresh copy"),
    ],
)
def test_bad_jpeg_member_is_named(tmp_path: Path, damage: str, message: str) -> None:
    members = cifar_members()
    name = "test/dog/0000.jpg"
    if damage == "truncated":
        members[name] = members[name][:300]
    else:
        members[name] = jpeg_bytes((1, 2, 3), size=(64, 48))
    write_zip(tmp_path / "cifar10-jpeg.zip", members)
    with pytest.raises(DataCorruptError, match=message):
        load_cifar10("test", root=tmp_path, download=False)


@pytest.mark.usefixtures("tiny_sizes")
def test_incomplete_copy_is_reported_with_counts(tmp_path: Path) -> None:
    members = cifar_members()
    del members["train/frog/0001.jpg"]
    write_zip(tmp_path / "cifar10-jpeg.zip", members)
    with pytest.raises(DataCorruptError, match="incomplete.*expected 2 images per class.*frog: 1"):
        load_cifar10("train", root=tmp_path, download=False)
    assert len(load_cifar10("test", root=tmp_path, download=False)) == 10


@pytest.mark.usefixtures("tiny_sizes")
def test_real_cifar10_counts_are_expected_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(D, "_CIFAR10_SIZES", {"train": 50_000, "test": 10_000})
    write_zip(tmp_path / "cifar10-jpeg.zip", cifar_members())
    with pytest.raises(DataCorruptError, match="expected 5,000 images per class"):
        load_cifar10("train", root=tmp_path, download=False)


@pytest.mark.usefixtures("tiny_sizes")
def test_class_names_that_are_not_cifar10_are_reported(tmp_path: Path) -> None:
    classes = ("plane", *CIFAR10_CLASSES[1:])
    write_zip(tmp_path / "cifar10-jpeg.zip", cifar_members(classes=classes))
    with pytest.raises(DataCorruptError, match="missing: airplane; unexpected: plane"):
        load_cifar10("train", root=tmp_path, download=False)


@pytest.mark.usefixtures("tiny_sizes")
def test_zip_without_the_split_is_reported(tmp_path: Path) -> None:
    members = {k: v for k, v in cifar_members().items() if k.startswith("train/")}
    write_zip(tmp_path / "cifar10-jpeg.zip", members)
    with pytest.raises(DataCorruptError, match="no test/<class>/ images"):
        load_cifar10("test", root=tmp_path, download=False)


# --------------------------------------------------------------------------- cache


@pytest.mark.usefixtures("tiny_sizes")
def test_second_load_comes_from_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    write_zip(root / "cifar10-jpeg.zip", cifar_members())
    before = sorted(p.name for p in root.iterdir())
    first = load_cifar10("train", root=root, download=False)
    assert sorted(p.name for p in root.iterdir()) == before, (
        "nothing may be written into the data root"
    )
    cached = list((tmp_path / "cache").glob("*.pt"))
    assert len(cached) == 1 and not list((tmp_path / "cache").glob("*.tmp"))

    def must_not_decode(*args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("decoded again although the cache holds this split")

    monkeypatch.setattr(D, "_decode_image", must_not_decode)
    second = load_cifar10("train", root=root, download=False)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    with pytest.raises(AssertionError, match="decoded again"):
        load_cifar10("test", root=root, download=False)  # a split not cached yet


@pytest.mark.usefixtures("tiny_sizes")
def test_changed_source_invalidates_the_cache(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "cifar10-jpeg.zip", cifar_members(shift=0))
    assert_colours(load_cifar10("test", root=tmp_path, download=False), shift=0)
    stat = path.stat()
    write_zip(path, cifar_members(shift=7))
    assert path.stat().st_size == stat.st_size, "same size: only the time can tell them apart"
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert_colours(load_cifar10("test", root=tmp_path, download=False), shift=7)


@pytest.mark.usefixtures("tiny_sizes")
def test_damaged_cache_file_is_decoded_again(tmp_path: Path) -> None:
    write_zip(tmp_path / "cifar10-jpeg.zip", cifar_members())
    first = load_cifar10("test", root=tmp_path, download=False)
    (cached,) = (tmp_path / "cache").glob("*.pt")
    cached.write_bytes(cached.read_bytes()[:100])
    with pytest.warns(UserWarning, match="unreadable cache file"):
        again = load_cifar10("test", root=tmp_path, download=False)
    assert torch.equal(first.images, again.images)
    assert torch.equal(load_cifar10("test", root=tmp_path, download=False).images, first.images)


@pytest.mark.usefixtures("tiny_sizes")
def test_unwritable_cache_warns_and_still_loads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RESNET_NB_CACHE", str(blocker / "cache"))
    write_zip(tmp_path / "cifar10-jpeg.zip", cifar_members())
    with pytest.warns(UserWarning, match="could not write the cache"):
        data = load_cifar10("test", root=tmp_path, download=False)
    assert len(data) == 10


def _failing_save(error: Exception):
    """A torch.save that writes a few bytes (as a full disk would), then raises ``error``."""

    def save(obj: object, f: object, *args: object, **kwargs: object) -> None:
        f.write(b"PK\x03\x04partial")  # type: ignore[attr-defined]
        raise error

    return save


@pytest.mark.usefixtures("tiny_sizes")
@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        RuntimeError(
            "[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0\n"
            "PytorchStreamWriter failed writing file data/0: file write failed"
        ),
    ],
    ids=["ENOSPC", "torch-writer"],
)
def test_full_cache_folder_costs_a_decode_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: Exception
) -> None:
    write_zip(tmp_path / "cifar10-jpeg.zip", cifar_members())
    monkeypatch.setattr(torch, "save", _failing_save(error))
    with pytest.warns(UserWarning) as caught:
        train = load_cifar10("train", root=tmp_path, download=False)
        test = load_cifar10("test", root=tmp_path, download=False)
    assert len(train) == 20 and len(test) == 10
    assert_colours(train)
    messages = [str(w.message) for w in caught if "cache" in str(w.message)]
    assert len(messages) == 1, f"one warning per cache folder, got {messages}"
    assert "could not write the cache file" in messages[0] and "decoded" in messages[0]
    assert ("is full" if isinstance(error, OSError) else "file write failed") in messages[0]
    assert str(tmp_path) not in messages[0], "cache paths are shown relative to the cache folder"
    assert list((tmp_path / "cache").iterdir()) == [], "the partial temp file must be removed"


@pytest.mark.usefixtures("tiny_sizes")
def test_read_only_cache_folder_costs_a_decode_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_zip(tmp_path / "cifar10-jpeg.zip", cifar_members())
    cache = tmp_path / "cache"
    cache.mkdir()

    def read_only(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(errno.EROFS, "Read-only file system")

    # chmod cannot stop root from writing, so the file system's refusal is simulated.
    import resnet_nb.state

    monkeypatch.setattr(resnet_nb.state, "open", read_only, raising=False)  # the temp file
    with pytest.warns(UserWarning, match="could not write the cache file.*Read-only file system"):
        data = load_cifar10("test", root=tmp_path, download=False)
    assert len(data) == 10 and list(cache.iterdir()) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
@pytest.mark.usefixtures("tiny_sizes")
def test_cache_folder_without_write_permission_costs_a_decode(tmp_path: Path) -> None:
    write_zip(tmp_path / "cifar10-jpeg.zip", cifar_members())
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o500)
    try:
        with pytest.warns(UserWarning, match="could not write the cache file"):
            assert len(load_cifar10("test", root=tmp_path, download=False)) == 10
    finally:
        cache.chmod(0o700)


# --------------------------------------------------------------------------- Fashion-MNIST


@pytest.mark.usefixtures("tiny_sizes")
def test_fashion_mnist_reads_idx_files(tmp_path: Path) -> None:
    written = write_fashion(tmp_path)
    for split in ("train", "test"):
        data = load_fashion_mnist(split, root=tmp_path, download=False)
        images, labels = written[split]
        assert data.images.shape == (len(images), 1, 28, 28)
        assert torch.equal(data.images[:, 0], torch.from_numpy(images))
        assert data.labels.dtype == torch.int64 and data.labels.tolist() == labels.tolist()
        assert data.classes == list(FASHION_MNIST_CLASSES)


@pytest.mark.usefixtures("tiny_sizes")
def test_truncated_idx_file_is_reported(tmp_path: Path) -> None:
    write_fashion(tmp_path)
    path = tmp_path / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataCorruptError, match="t10k-images-idx3-ubyte.*truncated"):
        load_fashion_mnist("test", root=tmp_path, download=False)


def test_fashion_mnist_not_found_lists_files_and_fixes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def offline(dataset: str, root: Path) -> None:
        assert dataset == "fashion_mnist"
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(D, "_torchvision_download", offline)
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist("test", root=tmp_path)
    text = str(info.value)
    assert str(tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte") in text
    assert "no route to host" in text and "RESNET_NB_DATA" in text and "download=True" in text
    assert info.value.__cause__ is None and info.value.__suppress_context__


# --------------------------------------------------------------------------- image folders


def save_image(path: Path, img: Image.Image, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)


def test_image_folder_converts_modes_to_rgb(tmp_path: Path) -> None:
    save_image(tmp_path / "cats" / "a.png", Image.new("L", (8, 6), 100))
    save_image(tmp_path / "cats" / "b.png", Image.new("RGBA", (8, 6), (10, 20, 30, 128)))
    save_image(tmp_path / "dogs" / "c.png", Image.new("P", (8, 6), 3))
    save_image(
        tmp_path / "dogs" / "nested" / "d.jpg", Image.new("RGB", (8, 6), (200, 0, 0)), "JPEG"
    )
    (tmp_path / "dogs" / ".DS_Store").write_bytes(b"\0\0junk")
    (tmp_path / "dogs" / "Thumbs.db").write_bytes(b"\0\0junk")
    (tmp_path / "README.md").write_text("a note beside the class folders")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    data = load_image_folder(tmp_path)
    assert data.classes == ["cats", "dogs"]
    assert data.images.shape == (4, 3, 6, 8)
    assert data.labels.tolist() == [0, 0, 1, 1]
    assert data.images[0].eq(100).all()
    assert data.images[1, :, 0, 0].tolist() == [10, 20, 30]


def test_image_folder_mixed_sizes_need_size(tmp_path: Path) -> None:
    save_image(tmp_path / "a" / "1.png", Image.new("RGB", (40, 30), (255, 0, 0)))
    save_image(tmp_path / "b" / "2.png", Image.new("RGB", (32, 32), (0, 255, 0)))
    with pytest.raises(ValueError, match=r"2\.png is 32x32.*1\.png is 40x30.*pass size="):
        load_image_folder(tmp_path)
    data = load_image_folder(tmp_path, size=16)
    assert data.images.shape == (2, 3, 16, 16)
    assert data.images[0, 0].eq(255).all() and data.images[1, 1].eq(255).all()
    assert "resized to 16" in data.source


def test_image_folder_names_a_file_that_is_not_an_image(tmp_path: Path) -> None:
    save_image(tmp_path / "a" / "1.png", Image.new("RGB", (4, 4)))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    with pytest.raises(DataCorruptError, match="notes.txt is not a readable image"):
        load_image_folder(tmp_path)


def test_image_folder_names_a_truncated_image(tmp_path: Path) -> None:
    save_image(tmp_path / "a" / "1.png", Image.new("RGB", (64, 64), (1, 2, 3)))
    save_image(tmp_path / "b" / "2.png", Image.effect_noise((64, 64), 50).convert("RGB"))
    path = tmp_path / "b" / "2.png"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataCorruptError, match="2.png is not a readable image"):
        load_image_folder(tmp_path)


@pytest.mark.parametrize(
    ("mode", "value", "fmt", "level"),
    [
        ("I;16", 40_000, "PNG", round(40_000 / 257)),
        ("I;16", 65_535, "TIFF", 255),
        ("I", 40_000, "TIFF", round(40_000 / 257)),
        ("F", 0.5, "TIFF", 128),
        ("F", 0.0, "TIFF", 0),
    ],
)
def test_image_folder_scales_16_bit_and_float_images_to_8_bits(
    tmp_path: Path, mode: str, value: float, fmt: str, level: int
) -> None:
    suffix = ".png" if fmt == "PNG" else ".tif"
    save_image(tmp_path / "a" / f"1{suffix}", Image.new(mode, (6, 4), value), fmt)
    save_image(tmp_path / "b" / "2.png", Image.new("RGB", (6, 4), (1, 2, 3)))
    data = load_image_folder(tmp_path)
    assert data.images[0].eq(level).all(), (mode, value, data.images[0, :, 0, 0].tolist())
    assert data.images[1, :, 0, 0].tolist() == [1, 2, 3]


def test_image_to_uint8_scales_arrays_by_their_range() -> None:
    u16 = np.array([[0, 257, 65535]], dtype=np.uint16)
    assert D.image_to_uint8(u16)[0].tolist() == [[0, 1, 255]]
    unit = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    assert D.image_to_uint8(unit)[:, 0].tolist() == [[0, 128, 255]] * 3
    wide = np.array([[-1.0, 0.0, 3.0]], dtype=np.float64)
    assert D.image_to_uint8(wide)[0].tolist() == [[0, 64, 255]], "other floats: min..max"
    flat = np.full((2, 2), 7.5, dtype=np.float32)
    assert D.image_to_uint8(flat).eq(0).all(), "a constant image out of range becomes black"
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[..., 0] = 9
    assert D.image_to_uint8(rgba).shape == (3, 2, 3)
    with pytest.raises(ValueError, match="NaN"):
        D.image_to_uint8(np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match=r"\[H, W\] or \[H, W, C\]"):
        D.image_to_uint8(np.zeros((2, 2, 7), dtype=np.uint8))


def test_corrupt_image_is_named_relative_to_the_data_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    monkeypatch.setenv("RESNET_NB_DATA", str(root))
    save_image(root / "pets" / "cats" / "a.png", Image.new("RGB", (4, 4)))
    (root / "pets" / "dogs").mkdir()
    (root / "pets" / "dogs" / "b.jpg").write_text("not a picture")
    with pytest.raises(DataCorruptError, match=r"^pets/dogs/b\.jpg is not a readable image") as info:
        load_image_folder(root / "pets")
    assert str(tmp_path) not in str(info.value)
    (root / "pets" / "dogs" / "b.jpg").unlink()
    save_image(root / "pets" / "dogs" / "b.png", Image.new("RGB", (4, 4)))
    assert load_image_folder(root / "pets").source == "image folder pets"
    elsewhere = tmp_path / "elsewhere" / "pics"
    save_image(elsewhere / "x" / "1.png", Image.new("RGB", (4, 4)))
    save_image(elsewhere / "y" / "2.png", Image.new("RGB", (4, 5)))
    with pytest.raises(ValueError, match=r"pics/y/2\.png is 4x5.*pics/x/1\.png is 4x4") as info:
        load_image_folder(elsewhere)
    assert str(tmp_path) not in str(info.value)


def test_read_image_errors_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataNotFoundError, match="missing.png does not exist"):
        D.read_image(tmp_path / "missing.png")
    with pytest.raises(ParameterError, match="is a folder, not an image file"):
        D.read_image(tmp_path)
    save_image(tmp_path / "big.png", Image.new("RGB", (64, 64)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(DataCorruptError, match="big.png is refused as a possible decompression bomb"):
        D.read_image(tmp_path / "big.png")


@pytest.mark.usefixtures("tiny_sizes")
def test_corrupt_cifar_member_in_a_folder_copy_is_named_relative_to_the_root(
    tmp_path: Path,
) -> None:
    members = cifar_members()
    members["train/cat/0001.jpg"] = members["train/cat/0001.jpg"][:200]
    write_folder(tmp_path / "cifar10-jpeg", members)
    with pytest.raises(DataCorruptError, match=r"^cifar10-jpeg/train/cat/0001\.jpg cannot be read") as info:
        load_cifar10("train", root=tmp_path, download=False)
    assert str(tmp_path) not in str(info.value)
    assert load_cifar10("test", root=tmp_path, download=False).source == (
        "CIFAR-10 test, JPEG copy: cifar10-jpeg"
    )


def test_image_folder_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "missing")
    save_image(tmp_path / "only" / "1.png", Image.new("RGB", (4, 4)))
    with pytest.raises(ValueError, match="1 class folder.*at least two"):
        load_image_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".DS_Store").write_bytes(b"junk")
    with pytest.raises(ValueError, match=f"^class folder {tmp_path.name}/empty holds no images"):
        load_image_folder(tmp_path)
    (tmp_path / "empty" / ".DS_Store").unlink()
    save_image(tmp_path / "empty" / "2.png", Image.new("RGB", (4, 4)))
    save_image(tmp_path / "loose.png", Image.new("RGB", (4, 4)))
    with pytest.raises(ValueError, match="loose.png.*subfolder named after its class"):
        load_image_folder(tmp_path)
    with pytest.raises(ParameterError, match="size"):
        load_image_folder(tmp_path, size=0)


def test_image_folder_cache_follows_the_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = tmp_path / "imgs"
    save_image(root / "a" / "1.png", Image.new("RGB", (4, 4), (1, 1, 1)))
    save_image(root / "b" / "2.png", Image.new("RGB", (4, 4), (2, 2, 2)))
    first = load_image_folder(root)
    real_decode = D._decode_image

    def must_not_decode(*args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("decoded again")

    monkeypatch.setattr(D, "_decode_image", must_not_decode)
    assert torch.equal(load_image_folder(root).images, first.images)
    monkeypatch.setattr(D, "_decode_image", real_decode)
    save_image(root / "b" / "3.png", Image.new("RGB", (4, 4), (3, 3, 3)))
    assert load_image_folder(root).labels.tolist() == [0, 1, 1]


# --------------------------------------------------------------------------- ImageData


def small_data(n: int = 10, classes: int = 3) -> ImageData:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 2, 2).clone()
    labels = torch.arange(n) % classes
    return ImageData(images, labels, [f"c{k}" for k in range(classes)], "synthetic")


def test_image_data_validates_its_fields() -> None:
    ok = small_data()
    with pytest.raises(ValueError, match="uint8 tensor"):
        ImageData(ok.images.float(), ok.labels, ok.classes, "x")
    with pytest.raises(ValueError, match="uint8 tensor"):
        ImageData(ok.images[0], ok.labels, ok.classes, "x")
    with pytest.raises(ValueError, match="int64.*labels.long"):
        ImageData(ok.images, ok.labels.int(), ok.classes, "x")
    with pytest.raises(ValueError, match="10 images but 9 labels"):
        ImageData(ok.images, ok.labels[:9], ok.classes, "x")
    with pytest.raises(ValueError, match="every label must be in 0..1"):
        ImageData(ok.images, ok.labels, ["a", "b"], "x")
    with pytest.raises(TypeError, match="torch.Tensor"):
        ImageData(ok.images.numpy(), ok.labels, ok.classes, "x")  # type: ignore[arg-type]


def test_image_data_repr_is_short_and_describe_counts_classes() -> None:
    data = small_data(n=1000)
    text = repr(data)
    assert text == "ImageData(1,000 images 3x2x2 uint8, 3 classes, source='synthetic')"
    lines = data.describe().splitlines()
    assert lines[0] == text and "c0" in lines[1] and lines[1].endswith("334")


def test_subset_by_positions_tensor_and_mask() -> None:
    data = small_data()
    by_list = data.subset([3, 1])
    assert by_list.images[:, 0, 0, 0].tolist() == [3, 1] and by_list.labels.tolist() == [0, 1]
    assert torch.equal(data.subset(torch.tensor([3, 1])).images, by_list.images)
    mask = data.labels == 2
    assert data.subset(mask).images[:, 0, 0, 0].tolist() == [2, 5, 8]
    assert len(data.subset([])) == 0
    by_list.images.zero_()
    assert data.images[3].eq(3).all(), "a subset must not share memory with its parent"
    with pytest.raises(IndexError, match="0..9"):
        data.subset([10])
    with pytest.raises(IndexError, match="0..9"):
        data.subset([-1])
    with pytest.raises(TypeError, match="integers"):
        data.subset(torch.tensor([0.5]))


# --------------------------------------------------------------------------- splits and stats


def test_train_val_split_defaults_are_45000_and_5000() -> None:
    n = 50_000
    data = ImageData(
        torch.zeros(n, 1, 1, 1, dtype=torch.uint8), torch.arange(n) % 10, list("abcdefghij"), "s"
    )
    train, val = train_val_split(data)
    assert (len(train), len(val)) == (45_000, 5_000)
    assert "seed 0" in val.source


def test_train_val_split_is_deterministic_and_disjoint() -> None:
    n = 100
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1)
    data = ImageData(images, torch.arange(n) % 4, list("abcd"), "s")
    train, val = train_val_split(data, val_size=20, seed=3)
    torch.manual_seed(123)  # the global RNG must not matter
    train2, val2 = train_val_split(data, val_size=20, seed=3)
    assert torch.equal(val.images, val2.images) and torch.equal(train.images, train2.images)
    ids_train, ids_val = set(train.images.flatten().tolist()), set(val.images.flatten().tolist())
    assert len(ids_val) == 20 and len(ids_train) == 80
    assert ids_train.isdisjoint(ids_val) and ids_train | ids_val == set(range(n))
    assert torch.equal(train.labels, train.images.flatten().long() % 4), (
        "labels must follow their images"
    )
    _, other = train_val_split(data, val_size=20, seed=4)
    assert not torch.equal(other.images, val.images)


@pytest.mark.parametrize("val_size", [0, -1, 100, 101, 2.5, True, "10"])
def test_train_val_split_rejects_bad_val_size(val_size: object) -> None:
    with pytest.raises(ParameterError, match="val_size.*0 < val_size < 100"):
        train_val_split(small_data(100), val_size=val_size)  # type: ignore[arg-type]


def test_channel_stats_match_a_direct_computation() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (37, 3, 5, 7), generator=gen, dtype=torch.uint8)
    images[:, 2] //= 4
    data = ImageData(images, torch.zeros(37, dtype=torch.int64), ["a"], "s")
    mean, std = channel_stats(data, chunk=5)
    x = images.double().div(255).transpose(0, 1).reshape(3, -1)
    assert mean == pytest.approx(x.mean(dim=1).tolist(), abs=1e-12)
    assert std == pytest.approx(x.std(dim=1, unbiased=False).tolist(), abs=1e-12)
    assert mean[2] < 0.3 < mean[0]
    gray_mean, _ = channel_stats(images[:, :1])
    assert len(gray_mean) == 1


# --------------------------------------------------------------------------- the real copies

needs_real_zip = pytest.mark.skipif(
    REAL_ZIP is None or not REAL_ZIP.is_file(),
    reason="set RESNET_NB_DATA to a folder holding cifar10-jpeg.zip to test against the real copy",
)
needs_real_fashion = pytest.mark.skipif(
    REAL_FMNIST is None or not (REAL_FMNIST / "train-images-idx3-ubyte").is_file(),
    reason="set RESNET_NB_DATA to a folder holding FashionMNIST/raw/*-ubyte to test the real files",
)


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("real-cache")


@pytest.fixture(scope="session")
def real_jpeg_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root holding only the real zip, so the JPEG copy is what gets loaded."""
    root = tmp_path_factory.mktemp("real-root")
    assert REAL_ZIP is not None
    (root / "cifar10-jpeg.zip").symlink_to(REAL_ZIP)
    return root


@pytest.fixture(scope="session")
def real_cifar(real_cache: Path, real_jpeg_root: Path) -> dict[str, ImageData]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RESNET_NB_CACHE", str(real_cache))
        return {s: load_cifar10(s, root=real_jpeg_root, download=False) for s in ("train", "test")}


@needs_real_zip
def test_real_copy_has_cifar10_shapes_and_balanced_classes(
    real_cifar: dict[str, ImageData],
) -> None:
    for split, per_class in (("train", 5_000), ("test", 1_000)):
        data = real_cifar[split]
        assert data.images.shape == (10 * per_class, 3, 32, 32)
        assert torch.bincount(data.labels).tolist() == [per_class] * 10
        assert data.classes == list(CIFAR10_CLASSES)
        assert "cifar10-jpeg.zip" in data.source


@needs_real_zip
def test_real_train_stats_match_the_data_readme(real_cifar: dict[str, ImageData]) -> None:
    mean, std = channel_stats(real_cifar["train"])
    assert [round(m, 3) for m in mean] == [round(v, 3) for v in (0.4913, 0.4821, 0.4465)]
    assert [round(s, 3) for s in std] == [round(v, 3) for v in (0.2452, 0.2428, 0.2606)]


@needs_real_zip
def test_real_second_load_reads_the_cache(
    monkeypatch: pytest.MonkeyPatch,
    real_cache: Path,
    real_jpeg_root: Path,
    real_cifar: dict[str, ImageData],
) -> None:
    monkeypatch.setenv("RESNET_NB_CACHE", str(real_cache))

    def must_not_decode(*args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("decoded again although the cache holds this split")

    monkeypatch.setattr(D, "_decode_image", must_not_decode)
    again = load_cifar10("test", root=real_jpeg_root, download=False)
    assert torch.equal(again.images, real_cifar["test"].images)


@needs_real_zip
def test_real_default_split(real_cifar: dict[str, ImageData]) -> None:
    train, val = train_val_split(real_cifar["train"])
    assert (len(train), len(val)) == (45_000, 5_000)
    counts = torch.bincount(val.labels, minlength=10)
    assert counts.sum() == 5_000 and counts.min() > 400, "a random split keeps every class"


@needs_real_fashion
def test_real_fashion_mnist_shapes_and_classes() -> None:
    assert REAL_DATA is not None
    for split, n in (("train", 60_000), ("test", 10_000)):
        data = load_fashion_mnist(split, root=REAL_DATA, download=False)
        assert data.images.shape == (n, 1, 28, 28)
        assert torch.bincount(data.labels).tolist() == [n // 10] * 10
        assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
