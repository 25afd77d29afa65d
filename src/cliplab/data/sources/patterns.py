"""Shell-style brace expansion for shard patterns (``{000..009}``, ``{a,b}``)."""

from __future__ import annotations

import re


def expand_braces(pattern: str) -> list[str]:
    """Expand shell-style braces: ``{000..009}`` (zero-padded ranges, optional ``..step``) and ``{a,b}``."""
    found = _find_group(pattern)
    if found is None:
        return [pattern]
    start, end, alternatives = found
    out: list[str] = []
    for alt in alternatives:
        out.extend(expand_braces(pattern[:start] + alt + pattern[end + 1 :]))
    return out


def _find_group(s: str) -> tuple[int, int, list[str]] | None:
    """First brace group of ``s`` that expands: (index of '{', index of '}', alternatives)."""
    i = s.find("{")
    while i != -1:
        depth, commas = 0, []
        for j in range(i, len(s)):
            if s[j] == "{":
                depth += 1
            elif s[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            elif s[j] == "," and depth == 1:
                commas.append(j)
        else:
            return None  # unbalanced: nothing more expands
        body = s[i + 1 : j]
        rng = re.fullmatch(r"(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?", body)
        if rng:
            return i, j, _range(*rng.groups())
        if commas:
            cuts = [i, *commas, j]
            return i, j, [s[a + 1 : b] for a, b in zip(cuts, cuts[1:])]
        i = s.find("{", i + 1)  # a literal "{x}": look further on
    return None


def _range(a: str, b: str, step: str | None) -> list[str]:
    lo, hi = int(a), int(b)
    inc = abs(int(step)) if step and int(step) != 0 else 1
    values = range(lo, hi + 1, inc) if lo <= hi else range(lo, hi - 1, -inc)
    padded = any(len(x.lstrip("-")) > 1 and x.lstrip("-").startswith("0") for x in (a, b))
    width = max(len(a), len(b)) if padded else 0
    return [str(v).zfill(width) for v in values]
