"""Print the README's benchmark tables (markdown) from the ``--json`` files the benchmarks wrote.

    python benchmarks/readme_tables.py [benchmarks/results/*.json]
    python benchmarks/readme_tables.py --readme README.md    # rewrite the README's generated block

The README holds the tables between the lines ``BEGIN`` and ``END`` below; ``--readme`` replaces what
is between them with the tables of ``benchmarks/results/*.json`` (``benchmarks/refresh_results.sh``
runs every benchmark there), and a test checks that the two agree.

Per benchmark (files in name order): one table of its single figures, a row per run (its command),
then a table per run for each figure that is itself a table (name -> {column: value}; a figure that
is one {name: value} mapping is a one-row table), each under
the line of the machine it ran on (``_machine.describe``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from _machine import HERE, describe

BEGIN = "<!-- benchmark tables: made by python benchmarks/readme_tables.py --readme README.md; do not edit -->"
END = "<!-- end of benchmark tables -->"


def cell(value: Any) -> str:
    """A figure as a table cell: floats to 4 significant digits (6 where 4 would show a small fraction as a whole number), text with ``|`` escaped."""
    if isinstance(value, float):
        text = f"{value:.4g}"
        # a cosine of 0.99996 is not 1: more digits where 4 would round a small fraction to a whole number
        return f"{value:.6g}" if abs(value) < 10 and float(text) == round(value) != value else text
    return str(value).replace("|", "\\|")


def table(first: str, rows: dict[str, dict[str, Any]]) -> list[str]:
    """A markdown table: ``first`` heads the row names, the columns are every key, in order of appearance."""
    columns = list(dict.fromkeys(k for row in rows.values() for k in row))
    lines = [f"| {' | '.join([first, *columns])} |", f"|{'---|' * (len(columns) + 1)}"]
    lines += [f"| {' | '.join([name, *(cell(row.get(c, '')) for c in columns)])} |" for name, row in rows.items()]
    return lines


def benchmark_tables(name: str, records: list[dict[str, Any]]) -> list[str]:
    """The markdown for one benchmark's runs."""
    lines = [f"### {name}", ""]
    single = {f"`{r['command']}`": {k: v for k, v in r["figures"].items() if not isinstance(v, dict)} for r in records}
    if any(single.values()):
        lines += [*table("command", single), ""]
        machines = list(dict.fromkeys(describe(r["machine"]) for r in records))
        lines += [f"Machine: {m}" for m in machines] + [""]
    for r in records:
        for figure, rows in r["figures"].items():
            if isinstance(rows, dict):
                if not all(isinstance(row, dict) for row in rows.values()):  # one row of named figures
                    rows = {figure: rows}
                lines += [f"`{r['command']}`: {figure}", "", *table(figure, rows), "", f"Machine: {describe(r['machine'])}", ""]
    return lines


def load(path: Path) -> dict[str, Any]:
    """One benchmark record; ValueError naming the file when it is not one."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    if not isinstance(record, dict) or not {"benchmark", "command", "machine", "figures"} <= record.keys():
        raise ValueError(f"{path} is not a benchmark --json file (no benchmark/command/machine/figures)")
    return record


def render(paths: list[Path]) -> str:
    """The tables for every benchmark among ``paths``, benchmarks in name order."""
    by_benchmark: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(paths):
        record = load(path)
        by_benchmark.setdefault(record["benchmark"], []).append(record)
    return "\n".join(line for name in sorted(by_benchmark) for line in benchmark_tables(name, by_benchmark[name]))


def with_tables(readme: str, tables: str) -> str:
    """``readme`` with the text between its BEGIN and END lines replaced by ``tables``."""
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or readme.index(BEGIN) > readme.index(END):
        raise ValueError(f"the README needs one line {BEGIN!r} and, after it, one line {END!r}")
    head, rest = readme.split(BEGIN)
    return f"{head}{BEGIN}\n\n{tables.rstrip()}\n\n{END}{rest.split(END, 1)[1]}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="benchmark JSON files (default: benchmarks/results/*.json)")
    parser.add_argument("--readme", type=Path, help="rewrite this README's generated block instead of printing")
    args = parser.parse_args(argv)
    paths = args.files or sorted((HERE / "results").glob("*.json"))
    if not paths:
        parser.error(f"no JSON files given and none in {HERE / 'results'}; run a benchmark with --json there first")
    try:
        tables = render(paths)
        if args.readme is None:
            print(tables, end="")
            return
        new = with_tables(args.readme.read_text(encoding="utf-8"), tables)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    temporary = args.readme.with_name(f".{args.readme.name}.tmp")
    temporary.write_text(new, encoding="utf-8")
    temporary.replace(args.readme)
    print(f"{args.readme}: tables of {len(paths)} benchmark files written")


if __name__ == "__main__":
    main()
