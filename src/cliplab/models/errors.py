"""The one error type the model layer raises for anything a user can fix."""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message is one line that says what to do."""


def brief(exc: BaseException, limit: int = 200) -> str:
    """First line of an exception message, shortened, for embedding in a one-line error."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
