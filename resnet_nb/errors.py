"""The package's error family: what went wrong, told to a user in one line.

Every error a user can cause - a bad setting, missing or damaged data, an
unreadable or mismatched checkpoint - is a :class:`ResnetNbError`. Each message
names what was wrong and how to fix it, so the command line prints it as one
line (no traceback) and a chapter stops at the cell that checks its parameters.
Each class also derives from the built-in error a caller would otherwise catch
(``ValueError``, ``FileNotFoundError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "ResnetNbError",
    "ParameterError",
    "DataNotFoundError",
    "DataCorruptError",
    "CheckpointError",
    "ArchitectureMismatchError",
    "WeightsNotFoundError",
    "RunFolderError",
    "NonFiniteLossError",
]


class ResnetNbError(Exception):
    """Base of every error a user of resnet_nb can cause and fix."""


class ParameterError(ResnetNbError, ValueError):
    """A chapter or command-line parameter has a value that cannot work."""


class DataNotFoundError(ResnetNbError, FileNotFoundError):
    """A dataset is in none of the places looked at and could not be downloaded."""


class DataCorruptError(ResnetNbError, ValueError):
    """A dataset's files exist but are damaged, incomplete or laid out wrongly."""


class CheckpointError(ResnetNbError, ValueError):
    """A checkpoint or weights file is missing, unreadable or not what it claims."""


class ArchitectureMismatchError(CheckpointError):
    """Saved weights belong to another architecture than the model they go into."""


class WeightsNotFoundError(CheckpointError, FileNotFoundError):
    """Pretrained weights are neither on disk nor downloadable."""


class RunFolderError(ResnetNbError, OSError):
    """A run folder cannot be used: a file, unwritable, full, or holding another run."""


class NonFiniteLossError(ResnetNbError, RuntimeError):
    """Training diverged: the loss or the BatchNorm statistics became NaN or infinite."""
