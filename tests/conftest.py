"""Shared pytest configuration.

Order of a full run: unit tests, then every notebook under nbval, then the book build
and the browser check (which reuse one build made in the same run).
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _stage(item: pytest.Item) -> int:
    if item.get_closest_marker("book"):
        return 2
    if str(item.fspath).endswith(".ipynb"):
        return 1
    return 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_stage)  # stable: keeps the order within each stage


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
