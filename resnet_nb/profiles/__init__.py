"""Parameter profiles: named sets of defaults for the chapters and the command line.

A profile is ``<name>.yaml`` in this folder (shipped with the package, so a
non-editable install has them): one mapping of parameters per chapter, keyed by
the chapter's file stem (``03_training``), plus a ``train`` section with the
defaults of ``python -m resnet_nb.train --profile <name>``. ``quick`` holds each
chapter's defaults (CPU-sized); ``full`` is sized for a GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet_nb.errors import ParameterError

__all__ = ["PROFILES_DIR", "profile_names", "load_profile"]

PROFILES_DIR = Path(__file__).resolve().parent


def profile_names(directory: Path = PROFILES_DIR) -> list[str]:
    """Names of the available profiles (the ``*.yaml`` files in ``directory``)."""
    return sorted(p.stem for p in Path(directory).glob("*.yaml"))


def load_profile(name: str, section: str, directory: Path = PROFILES_DIR) -> dict[str, Any]:
    """The parameters of ``section`` (a chapter stem or ``train``) in profile ``name``.

    A profile without the section gives ``{}``; an unknown profile or a section
    that is not a mapping raises :class:`ParameterError`.
    """
    import yaml

    if name not in profile_names(directory):
        names = ", ".join(profile_names(directory)) or "none found"
        raise ParameterError(f"parameter profile={name!r} is invalid: choose one of {names}")
    path = Path(directory) / f"{name}.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    values = data.get(section) or {}
    if not isinstance(values, dict):
        raise ParameterError(
            f"profile {name!r}: section {section!r} must be a mapping of parameter names "
            "to values"
        )
    return dict(values)
