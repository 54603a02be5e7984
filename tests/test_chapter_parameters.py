"""Chapters 3 and 4: their parameter validation and their profile sections.

The cells up to a chapter's validation cell are run in a namespace with one
parameter replaced, the way papermill injects it; a bad value must fail there
with a ParameterError naming the parameter, the value and the valid choices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from resnet_nb.params import ParameterError

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ("03_training", "04_going_deeper")


def _cells(stem: str) -> tuple[list[str], int]:
    """The chapter's code cells and the index of its parameters cell."""
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(ROOT / "notebooks" / f"{stem}.py")
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{stem}: expected one cell tagged 'parameters'"
    return [c.source for c in code], tagged[0]


def _validate(stem: str, **overrides: Any) -> dict[str, Any]:
    """Run imports, parameters (with ``overrides``) and the validation cell."""
    sources, i = _cells(stem)
    namespace: dict[str, Any] = {"__name__": "__chapter__"}
    for source in sources[:i]:
        exec(compile(source, f"{stem}-imports", "exec"), namespace)
    exec(compile(sources[i], f"{stem}-parameters", "exec"), namespace)
    namespace.update(overrides)
    exec(compile(sources[i + 1], f"{stem}-validation", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("stem", CHAPTERS)
def test_defaults_pass_validation(stem: str) -> None:
    namespace = _validate(stem)
    assert namespace["seed"] == 0


BAD = [
    ("03_training", "model", "resnet999", ["resnet20", "plain56"]),
    ("03_training", "epochs", 0, ["positive integer"]),
    ("03_training", "batch_size", 12.5, ["positive integer"]),
    ("03_training", "batch_size", "128", ["positive integer"]),
    ("03_training", "device", "tpu", ["'cpu'", "'cuda'"]),
    ("03_training", "schedule", "linear", ["'onecycle'", "'cosine'", "'step'"]),
    ("03_training", "large_batch", -1, ["positive integer"]),
    ("03_training", "tutorial_recipe", "yes", ["True or False"]),
    ("03_training", "reference_run", "cpu-resnet20", ["recorded runs:", "cpu-resnet20-strong"]),
    ("04_going_deeper", "depths", [20, 57], ["20, 32, 44, 56, 110"]),
    ("04_going_deeper", "paper_runs", "cpu-paper5", ["recorded sets:", "cpu-paper"]),
    ("04_going_deeper", "depths", 56, ["a list"]),
    ("04_going_deeper", "epochs", -3, ["positive integer"]),
    ("04_going_deeper", "batch_size", 0, ["positive integer"]),
    ("04_going_deeper", "device", "gpu", ["'cpu'", "'cuda'"]),
    ("04_going_deeper", "schedule", "exp", ["'onecycle'", "'step'"]),
    ("04_going_deeper", "val_limit", 0, ["positive integer"]),
    ("04_going_deeper", "warmup", "yes", ["'auto'", "'on'", "'off'"]),
]


@pytest.mark.parametrize(("stem", "name", "value", "choices"), BAD)
def test_bad_parameter_names_name_value_and_choices(
    stem: str, name: str, value: Any, choices: list[str]
) -> None:
    with pytest.raises(ParameterError) as info:
        _validate(stem, **{name: value})
    message = str(info.value)
    assert f"{name}=" in message
    assert repr(value) in message
    for choice in choices:
        assert choice in message


@pytest.mark.parametrize("stem", CHAPTERS)
def test_full_profile_passes_validation(stem: str) -> None:
    full = yaml.safe_load((ROOT / "resnet_nb" / "profiles" / "full.yaml").read_text())
    values = _validate(stem, **full[stem])
    assert values["epochs"] == full[stem]["epochs"]
