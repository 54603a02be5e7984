"""Time loading CIFAR-10: decoding the source once versus reading the decoded cache.

Run with the data root set, e.g.:
    RESNET_NB_DATA=/path/to/data python benchmarks/data_load.py

Uses a fresh temporary cache, so the first load of each split decodes; the second
reads the cache. Prints both times and their ratio.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import torch

from resnet_nb import data


def main() -> None:
    """Print decode and cache-load times for both CIFAR-10 splits."""
    cache = tempfile.mkdtemp(prefix="resnet-nb-bench-cache-")
    os.environ["RESNET_NB_CACHE"] = cache
    try:
        data.load_cifar10("test", download=False)  # imports and first-touch costs out of the way
        shutil.rmtree(cache)
        for split in ("train", "test"):
            start = time.perf_counter()
            loaded = data.load_cifar10(split, download=False)
            cold = time.perf_counter() - start
            start = time.perf_counter()
            data.load_cifar10(split, download=False)
            warm = time.perf_counter() - start
            print(
                f"{split:5}  {len(loaded):6,} images  decode + write cache {cold:6.2f} s  "
                f"load cache {warm:6.3f} s  ratio {cold / warm:5.1f}x"
            )
        print(f"source: {loaded.source}")
        print(f"torch threads: {torch.get_num_threads()}, load average: {os.getloadavg()}")
    finally:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
