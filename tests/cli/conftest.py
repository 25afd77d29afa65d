"""Fixtures for CLI tests: the Typer app with the commands under test, and a runner."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner


@pytest.fixture(scope="session")
def app():
    from cliplab.cli import _register
    from cliplab.cli import app as cliplab_app

    _register()
    return cliplab_app


@pytest.fixture
def cli(app):
    """``cli(*args)`` -> click Result; stdout in ``.stdout``, stderr in ``.stderr``."""
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def model_args(tiny_model_files) -> list[str]:
    return ["--model", tiny_model_files["spec"], "--pretrained", str(tiny_model_files["weights"])]
