"""A small self-contained HTML report: one file, images inlined as data URIs, no external assets.

    report = Report("Zero-shot classification")
    report.add_table("Metrics", {"acc1": 0.91, "acc5": 0.99})
    report.add_figure("Confusion matrix", png_bytes, caption="rows normalised")
    report.save("report.html")
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from cliplab.evaluate.plots import to_data_uri
from cliplab.files import atomic_write

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { border-bottom: 2px solid #4c78a8; padding-bottom: .2em; }
h2 { margin-top: 1.8em; color: #333; }
table { border-collapse: collapse; margin: .6em 0; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; }
th { background: #f0f4f8; }
tr:nth-child(even) td { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: .6em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; }
footer { margin-top: 3em; color: #888; font-size: 12px; }
"""


@dataclass
class Section:
    title: str
    body: str  # HTML


def format_value(value: Any) -> str:
    """A table cell as escaped text: floats to 4 decimals, NaN/None as a dash, containers as JSON."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        v = float(value)
        return f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}"
    if isinstance(value, (dict, list, tuple)):
        return html.escape(json.dumps(value, default=str))
    return html.escape(str(value))


def _cell(value: Any) -> str:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool) or type(value).__module__ == "numpy"
    return f'<td class="num">{format_value(value)}</td>' if numeric else f"<td>{format_value(value)}</td>"


def table_html(rows: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> str:
    """A dict as a two-column key/value table; a list of dicts as one row each (columns in first-seen order)."""
    if isinstance(rows, Mapping):
        body = "".join(f"<tr><th>{html.escape(str(k))}</th>{_cell(v)}</tr>" for k, v in rows.items())
        return f"<table>{body}</table>"
    rows = list(rows)
    columns: list[str] = []
    for row in rows:
        columns.extend(str(k) for k in row if str(k) not in columns)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(row.get(c)) for c in columns) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Report:
    """An HTML report built section by section; every ``add_*`` returns the report for chaining."""

    def __init__(self, title: str, subtitle: str = "") -> None:
        self.title = title
        self.subtitle = subtitle
        self.sections: list[Section] = []

    def add_table(self, title: str, rows: Sequence[Mapping[str, Any]] | Mapping[str, Any], caption: str = "") -> "Report":
        """A key/value table (dict) or a table with one row per dict (list of dicts)."""
        return self._add(title, table_html(rows) + _caption_p(caption))

    def add_figure(self, title: str, png: bytes, caption: str = "", alt: str | None = None) -> "Report":
        """A PNG image inlined as a data URI."""
        alt_text = html.escape(alt if alt is not None else title, quote=True)
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        return self._add(title, f'<figure><img src="{to_data_uri(png)}" alt="{alt_text}">{cap}</figure>')

    def add_text(self, title: str, text: str) -> "Report":
        """A paragraph of plain text (escaped)."""
        return self._add(title, f"<p>{html.escape(text)}</p>")

    def add_html(self, title: str, body: str) -> "Report":
        """Free HTML, inserted as given (the caller escapes what it must)."""
        return self._add(title, body)

    def _add(self, title: str, body: str) -> "Report":
        self.sections.append(Section(title, body))
        return self

    def to_html(self) -> str:
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(self.title)}</title>",
            f"<style>{CSS}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        if self.subtitle:
            parts.append(f"<p>{html.escape(self.subtitle)}</p>")
        for s in self.sections:
            parts.append(f"<section><h2>{html.escape(s.title)}</h2>{s.body}</section>" if s.title else f"<section>{s.body}</section>")
        parts.append("<footer>Generated by cliplab.</footer></body></html>")
        return "\n".join(parts)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the report to ``path`` atomically (temporary file in the same folder, then rename)."""
        return atomic_write(path, self.to_html())


def _caption_p(caption: str) -> str:
    return f"<p><small>{html.escape(caption)}</small></p>" if caption else ""
