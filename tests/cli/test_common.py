"""What every command shares: which errors become one line, OS errors in words, help that reads well."""

from __future__ import annotations

import errno

import pytest
import typer

from cliplab.cli.common import os_error_message, user_errors
from cliplab.errors import InputError


def test_user_errors_catch_only_what_a_user_can_fix(capsys):
    with pytest.raises(typer.Exit) as exit_info:
        with user_errors():
            raise InputError("bad --top-k")
    assert exit_info.value.exit_code == 2 and capsys.readouterr().err == "error: bad --top-k\n"
    with pytest.raises(KeyError):  # a bug keeps its traceback
        with user_errors():
            {}["missing"]


def test_os_errors_in_plain_words():
    exists = FileExistsError(errno.EEXIST, "File exists", "ok.png")
    assert os_error_message(exists) == "path exists and is a file: ok.png"
    denied = PermissionError(errno.EACCES, "Permission denied", "/root/out/.results.json.abc123.tmp")
    assert os_error_message(denied) == "permission denied: /root/out/results.json"  # never a temporary name
    assert "[Errno" not in os_error_message(OSError(errno.ENOSPC, "No space left on device"))


def test_bug_in_a_command_shows_its_traceback(cli, monkeypatch):
    import cliplab.features

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(cliplab.features, "embed", broken)
    result = cli("embed", "--images", "synthetic:2", "--out", "x", "--no-progress")
    assert result.exit_code == 1 and isinstance(result.exception, KeyError)


@pytest.mark.parametrize("command", [[], ["demo"], ["embed"], ["classify"], ["eval"], ["data", "synth"], ["inspect", "fit"], ["inspect", "score"]])
def test_help_reads_well_without_a_terminal(cli, command):
    text = cli(*command, "--help").stdout
    assert "<bool>" not in text and "``" not in text and "│" not in text


@pytest.mark.parametrize("command", [["demo"], ["embed"], ["classify"], ["eval", "robustness"], ["data", "synth"], ["inspect", "fit"], ["inspect", "score"]])
def test_every_long_command_has_progress_switch(cli, command):
    assert "--progress / --no-progress" in cli(*command, "--help").stdout
