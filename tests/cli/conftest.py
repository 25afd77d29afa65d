"""Fixtures for CLI tests (the app and the ``cli`` runner are in the top-level conftest)."""

from __future__ import annotations

import pytest


@pytest.fixture
def model_args(tiny_model_files) -> list[str]:
    return ["--model", tiny_model_files["spec"], "--pretrained", str(tiny_model_files["weights"])]
