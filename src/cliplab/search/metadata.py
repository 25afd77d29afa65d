"""The metadata sidecar: one SQLite table, one row per indexed vector, joined on the vector's row.

Columns: ``row`` (the vector's position in the index), ``id`` (unique), ``label``, ``caption``
(the first caption), ``captions`` (all of them, JSON) and one column per metadata key (scalars as
they are, anything nested as JSON text). Filters are SQL ``WHERE`` expressions over these columns,
run on a read-only connection whose authorizer allows reading the items table and nothing else, so
a filter that arrives over HTTP can select rows but never change, attach or list anything. A filter
has a time budget (``filter_budget_s``, enforced by SQLite's progress handler) and, for a store kept
in a file, its own connection and lock, so a slow filter never holds up the lookups other searches
need.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cliplab.errors import InputError, brief

TABLE = "items"
FIXED_COLUMNS = ("row", "id", "label", "caption", "captions")
_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# sqlite3 authorizer action codes a filter may use (reading columns, calling functions, the SELECT itself)
_READ_ONLY_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION}
FILTER_BUDGET_S = 1.0  # seconds one filter may run
_PROGRESS_STEPS = 10_000  # SQLite virtual-machine steps between two budget checks
_FILTER_MAX_LENGTH = 10_000_000  # longest string or blob a filter may build (SQLITE_LIMIT_LENGTH)


def _column_value(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return json.dumps(value, ensure_ascii=False, default=str)


def _check_column(name: str) -> str:
    if not _SAFE_NAME.match(name) or name.lower() in FIXED_COLUMNS:
        raise InputError(f"metadata key {name!r} cannot be a column; use letters, digits and _ and avoid {', '.join(FIXED_COLUMNS)}")
    return name


class MetadataStore:
    """Rows of metadata keyed by index position, in an SQLite file (or in memory with ``":memory:"``)."""

    filter_budget_s: float = FILTER_BUDGET_S

    def __init__(self, path: str | os.PathLike, *, read_only: bool = False) -> None:
        self.path = str(path)
        if read_only:
            self._conn = sqlite3.connect(f"file:{Path(self.path).resolve()}?mode=ro", uri=True, check_same_thread=False)
        else:
            self._conn = sqlite3.connect(self.path, check_same_thread=False)
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (row INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, "
                "label TEXT, caption TEXT, captions TEXT)"
            )
        self._lock = threading.Lock()  # one connection shared by the service's worker threads
        # filters run on a read-only connection of their own (a file) or on the only one (in memory)
        self._filter_conn = None if self.path == ":memory:" else _filter_connection(self.path)
        self._filter_lock = threading.Lock() if self._filter_conn is not None else self._lock

    # --- writing --------------------------------------------------------------------------------------
    def _query(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple]]:
        """Column names and all rows of one statement, under the lock."""
        with self._lock:
            cur = self._conn.execute(sql, params)
            return [d[0] for d in cur.description or ()], cur.fetchall()

    def columns(self) -> list[str]:
        return [r[1] for r in self._query(f"PRAGMA table_info({TABLE})")[1]]

    def add(self, first_row: int, ids: Sequence[str], labels=None, captions=None, meta=None) -> None:
        """Insert rows ``first_row, first_row+1, ...``; new metadata keys become new columns."""
        existing = set(self.columns())
        keys: list[str] = []
        for m in meta or []:
            for key in m or {}:
                if key not in existing and key not in keys:
                    keys.append(_check_column(key))
        for key in keys:
            self._query(f'ALTER TABLE {TABLE} ADD COLUMN "{key}"')
        extra = [c for c in self.columns() if c not in FIXED_COLUMNS]
        names = ", ".join(f'"{c}"' for c in (*FIXED_COLUMNS, *extra))
        marks = ", ".join("?" for _ in range(len(FIXED_COLUMNS) + len(extra)))
        rows = []
        for i, id_ in enumerate(ids):
            caps = list(captions[i]) if captions is not None and captions[i] else []
            m = (meta[i] or {}) if meta is not None else {}
            rows.append((
                first_row + i, id_, labels[i] if labels is not None else None,
                caps[0] if caps else None, json.dumps(caps, ensure_ascii=False) if caps else None,
                *[_column_value(m.get(c)) for c in extra],
            ))
        try:
            with self._lock, self._conn:
                self._conn.executemany(f"INSERT INTO {TABLE} ({names}) VALUES ({marks})", rows)
        except sqlite3.IntegrityError as exc:
            raise InputError(f"an id being added is already in the index ({exc}); add only new ids") from exc

    def has_ids(self, ids: Iterable[str]) -> list[str]:
        """The ids of ``ids`` that are already stored."""
        found: list[str] = []
        ids = list(ids)
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            q = f"SELECT id FROM {TABLE} WHERE id IN ({','.join('?' * len(part))})"
            found += [r[0] for r in self._query(q, part)[1]]
        return found

    def backup_to(self, path: str | os.PathLike) -> None:
        """Copy the whole store to a new SQLite file at ``path``."""
        dest = sqlite3.connect(str(path))
        try:
            with self._lock:
                self._conn.backup(dest)
        finally:
            dest.close()

    def copy(self) -> MetadataStore:
        """An in-memory copy of the whole store (rows added to it leave this one as it is)."""
        out = MetadataStore(":memory:")
        with self._lock:
            self._conn.backup(out._conn)
        return out

    def close(self) -> None:
        self._conn.close()
        if self._filter_conn is not None:
            self._filter_conn.close()

    # --- reading --------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._query(f"SELECT COUNT(*) FROM {TABLE}")[1][0][0])

    def rows_for_ids(self, ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            part = list(ids[start : start + 500])
            q = f"SELECT id, row FROM {TABLE} WHERE id IN ({','.join('?' * len(part))})"
            out.update(dict(self._query(q, part)[1]))
        return out

    def records(self, rows: Sequence[int]) -> dict[int, dict[str, Any]]:
        """``{row: {"id", "label", "caption", "captions", ...columns}}`` for ``rows`` (None values left out)."""
        out: dict[int, dict[str, Any]] = {}
        rows = [int(r) for r in rows]
        for start in range(0, len(rows), 500):
            part = rows[start : start + 500]
            names, found = self._query(f"SELECT * FROM {TABLE} WHERE row IN ({','.join('?' * len(part))})", part)
            for values in found:
                rec = {n: v for n, v in zip(names, values) if v is not None}
                if "captions" in rec:
                    rec["captions"] = json.loads(rec["captions"])
                out[rec.pop("row")] = rec
        return out

    def filter_rows(self, where: str) -> np.ndarray:
        """Index rows whose metadata satisfies the SQL expression ``where`` (e.g. ``label = 'cat'``).

        Raises ``InputError`` for anything but one read-only expression over the columns, and for a
        filter that runs longer than ``filter_budget_s``.
        """
        query = f"SELECT row FROM {TABLE} WHERE {where}"
        conn = self._filter_conn or self._conn
        with self._filter_lock:
            deadline = time.monotonic() + self.filter_budget_s
            conn.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_STEPS)
            conn.set_authorizer(_filter_authorizer)
            try:
                found = [r[0] for r in conn.execute(query).fetchall()]
                last = conn.execute(f"SELECT coalesce(max(row), -1) FROM {TABLE}").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_INTERRUPT:
                    raise _bad_filter(where, brief(exc)) from exc
                raise InputError(f"filter {where!r} ran over its {self.filter_budget_s:g} s budget; "
                                 "pass a simpler expression over the columns") from exc
            except sqlite3.Error as exc:  # e.g. ProgrammingError: more than one statement
                raise _bad_filter(where, brief(exc)) from exc
            finally:
                conn.set_authorizer(None)
                conn.set_progress_handler(None, 0)
        # an expression only selects rows; anything else came from a query of its own (UNION ...)
        if not all(type(v) is int and 0 <= v <= last for v in found):
            raise _bad_filter(where, "it selects values that are not rows of the index")
        return np.unique(np.array(found, dtype=np.int64))


def _filter_connection(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, check_same_thread=False)
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, _FILTER_MAX_LENGTH)
    return conn


def _bad_filter(where: str, why: str) -> InputError:
    return InputError(f"filter {where!r} is not one read-only expression over the columns ({why}); "
                      "pass e.g. label = 'cat'")


def _filter_authorizer(action: int, arg1: str | None, *args: Any) -> int:
    """Allow a filter to read the items table and call functions; deny everything else."""
    if action == sqlite3.SQLITE_READ and arg1 != TABLE:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK if action in _READ_ONLY_ACTIONS else sqlite3.SQLITE_DENY
