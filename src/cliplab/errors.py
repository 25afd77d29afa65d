"""One error hierarchy for everything a user can fix.

Every error cliplab raises on purpose derives from :class:`CliplabError`, so a caller (and the
CLI) can tell a bad input from a bug: ``except CliplabError`` catches the first, a bug keeps its
traceback. Each subclass also derives from the built-in type it used to be (``ValueError`` or
``RuntimeError``), so existing ``except ValueError`` code keeps working. Messages are one line that
names the input and what to do; raise them ``from exc`` so the cause is kept.
"""

from __future__ import annotations

import contextvars
import os
import sys
import warnings
from contextlib import contextmanager
from typing import Iterator


class CliplabError(Exception):
    """Base of every error cliplab raises for a problem the user can fix."""


class InputError(CliplabError, ValueError):
    """An argument or option value that cannot be used (wrong type, shape, range or combination)."""


class ModelLoadError(CliplabError, RuntimeError):
    """A model could not be loaded; the message is one line that says what to do."""


class OutputError(CliplabError, OSError):
    """An output that could not be written (a full disk, a file size limit); nothing half-written is left."""


class SourceError(CliplabError, ValueError):
    """A dataset spec that cannot be listed; the message is one line naming the input and the fix."""


class FeaturesFileError(CliplabError, ValueError):
    """A saved features folder that cannot be read back; the message names the file and the fix."""


class BadImage(CliplabError, ValueError):
    """An input that cannot be decoded into an image; ``reason`` is a short fixed phrase.

    Reasons: "empty file", "not an image", "truncated", "unreadable", "decompression bomb".
    """

    def __init__(self, reason: str, source_id: str = "", detail: str = "") -> None:
        self.reason = reason
        self.source_id = source_id
        self.detail = detail
        where = f"{source_id}: " if source_id else ""
        super().__init__(f"{where}{reason}" + (f" ({detail})" if detail else ""))


class NothingEmbeddedError(CliplabError, ValueError):
    """A run that produced no embedding at all (every input skipped, or an empty source)."""


def brief(exc: BaseException, limit: int = 200) -> str:
    """First line of an exception message, shortened, for embedding in a one-line error."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- how a message names what the user passed --------------------------------------------------
_ON_COMMAND_LINE: contextvars.ContextVar[bool] = contextvars.ContextVar("cliplab_on_command_line", default=False)


@contextmanager
def command_line_spelling() -> Iterator[None]:
    """Inside, ``how_to_pass`` spells arguments as command-line flags (the CLI sets this)."""
    token = _ON_COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _ON_COMMAND_LINE.reset(token)


# Python arguments whose command-line flag is not simply "--" + the name with dashes.
FLAG_NAMES = {"spec": "--model", "source": "--images"}


def how_to_pass(argument: str, value: str | None = None) -> str:
    """How the reader passes ``argument``: ``--image-col NAME`` on the command line, ``image_col='NAME'`` in Python."""
    if _ON_COMMAND_LINE.get():
        flag = FLAG_NAMES.get(argument, "--" + argument.replace("_", "-"))
        return flag if value is None else f"{flag} {value}"
    if argument == "spec":
        return "load_model(...)" if value is None else f"load_model({value!r})"
    return f"{argument}=" if value is None else f"{argument}={value!r}"


def spelled(python: str, command_line: str) -> str:
    """``command_line`` inside :func:`command_line_spelling` (the CLI), else ``python``: for wordings
    ``how_to_pass`` cannot build, e.g. ``regions=True`` / ``--regions``."""
    return command_line if _ON_COMMAND_LINE.get() else python


# --- warnings that point at the caller's line ----------------------------------------------------
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_LIBRARY_MARKERS = (os.sep + "torch" + os.sep, os.sep + "sklearn" + os.sep, os.sep + "typer" + os.sep,
                    os.sep + "click" + os.sep, "<frozen ")  # fmt: skip


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first frame outside cliplab (and the libraries calling it back),
    so the warning names the user's line rather than cliplab's internals."""
    frame = sys._getframe(1)  # the frame that called warn(): stacklevel 2
    level = 2
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not filename.startswith(_PACKAGE_DIR) and not any(m in filename for m in _LIBRARY_MARKERS):
            break
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
