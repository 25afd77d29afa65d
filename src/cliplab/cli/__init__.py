"""The ``cliplab`` command: a thin layer over the Python API, one module per command group."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="cliplab",
    help="One toolkit for CLIP-family models: embed, classify, search, train and evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: reads the same in a terminal, a pipe or a log
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"cliplab {version('cliplab')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
) -> None:
    pass


def _register() -> None:
    # Each module adds its commands to ``app``; import order is the order of ``--help``.
    from cliplab.cli import (  # noqa: F401
        adapt,
        cache,
        caption,
        classify,
        curate,
        data,
        demo,
        doctor,
        embed,
        evaluate,
        inspect,
        moe,
        search,
        segment,
        support,
        train,
        un2clip,
    )


def main() -> None:
    _register()
    app()
