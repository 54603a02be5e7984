"""Validation of chapter and command-line parameters.

Every chapter validates its papermill parameters in the cell right after the
``parameters`` cell, so a bad value fails there - with the parameter's name, the
bad value and what would be valid - instead of deep inside a training loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from resnet_nb.errors import ParameterError

__all__ = [
    "ParameterError",
    "check_choice",
    "check_positive_int",
    "check_positive_float",
    "check_fraction",
    "check_device",
]


def _fail(name: str, value: Any, expected: str) -> ParameterError:
    return ParameterError(f"parameter {name}={value!r} is invalid: {expected}")


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise ParameterError."""
    options = list(choices)
    if value not in options:
        shown = ", ".join(repr(c) for c in options)
        raise _fail(name, value, f"choose one of {shown}")
    return value


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` if it is an int > 0 (bool excluded), else raise."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail(name, value, "it must be a positive integer, e.g. 128")
    return value


def check_positive_float(name: str, value: Any) -> float:
    """Return ``value`` as float if it is a finite number > 0, else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(name, value, "it must be a positive number, e.g. 0.1")
    if not (value > 0 and value != float("inf")):
        raise _fail(name, value, "it must be a positive, finite number, e.g. 0.1")
    return float(value)


def check_fraction(name: str, value: Any) -> float:
    """Return ``value`` if it is a number in [0, 1), else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise _fail(name, value, "it must be a number in [0, 1), e.g. 0.1")
    return float(value)


def check_device(name: str, value: Any) -> str:
    """Validate a device parameter: 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.

    The device must also exist on this machine; 'auto' picks cuda, then mps,
    then cpu.
    """
    import torch

    valid = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
    if not isinstance(value, str):
        raise _fail(name, value, f"choose {valid}")
    if value == "auto" or value == "cpu":
        return value
    if value == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise _fail(name, value, "MPS is not available on this machine; use 'auto' or 'cpu'")
        return value
    if value == "cuda" or value.startswith("cuda:"):
        index = value.partition(":")[2]
        if index and not index.isdigit():
            raise _fail(name, value, f"choose {valid}")
        if not torch.cuda.is_available():
            raise _fail(name, value, "CUDA is not available on this machine; use 'auto' or 'cpu'")
        if index and int(index) >= torch.cuda.device_count():
            raise _fail(name, value, f"this machine has {torch.cuda.device_count()} CUDA device(s)")
        return value
    raise _fail(name, value, f"choose {valid}")
