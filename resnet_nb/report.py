"""Provenance and small display helpers shared by every chapter.

Each chapter ends with :func:`provenance`, which records where its numbers came
from: device, library versions, parameters, data source and wall time.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["provenance", "device_name"]


def device_name(device: Any = None) -> str:
    """A human-readable name for ``device`` (default: the best available one)."""
    import torch

    if device is None:
        if torch.cuda.is_available():
            device = "cuda"
        elif hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        cpu = platform.processor() or platform.machine()
        return f"cpu: {cpu}, {torch.get_num_threads()} threads"
    return str(device)


def provenance(
    params: Mapping[str, Any],
    started: float,
    data_source: str | None = None,
    device: Any = None,
) -> dict[str, Any]:
    """Collect and print what produced a chapter's outputs.

    Parameters
    ----------
    params:
        The chapter's parameters (the values of the ``parameters`` cell as run).
    started:
        ``time.perf_counter()`` taken at the top of the chapter.
    data_source:
        Where the data came from (e.g. the path of the CIFAR-10 copy), if any.
    device:
        The device the chapter computed on (default: the best available one).

    Returns the record as a dict, so a script can also save it as JSON.
    """
    import torch
    import torchvision

    record = {
        "device": device_name(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "platform": platform.platform(),
        "parameters": dict(params),
        "data_source": data_source or "none (no dataset used)",
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    width = max(len(k) for k in record)
    for key, value in record.items():
        if isinstance(value, dict):
            value = json.dumps(value, default=str)
        print(f"{key:<{width}}  {value}")
    return record
