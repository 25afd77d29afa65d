"""The synthetic scenes' vocabulary and caption grammar in languages other than English.

Each language is package data (``cliplab/data/lang/<code>.json``), written by hand, since no
translation model can be downloaded (the "synthetic languages" stand-in of DC-CLIP and RS-M-CLIP,
wave-3 reference appendix item 6, here real languages with their own scripts and word orders):

- a lexicon: every shape, colour, size, position and background word, and a generic noun
  ("Form", "图形") for prompts that name no shape. A shape is ``[word, gender]`` where the
  language has grammatical gender; colours and sizes are then ``{gender: form}`` (agreement);
  a size may say ``"slot": "before"|"after"`` where its place depends on the word (French
  "petit"/"de taille moyenne");
- the grammar: ``article`` (one word or one per gender, absent where the language has none),
  ``object`` (the order of article, size, colour, shape and position inside a noun phrase),
  ``separator`` (" ", or "" for Chinese and Japanese, written without spaces), ``list``/``and``
  (how noun phrases are joined), and the templates ``scene`` (the full caption), ``photo`` (the
  zero-shot prompt for a shape or a size) and ``paraphrase`` (other wordings).

English stays in :mod:`cliplab.data.synthetic` (its captions are what every model was trained on).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from cliplab.errors import InputError

CODES: tuple[str, ...] = ("de", "fr", "es", "zh", "ja", "ar")  # every language besides English, in a fixed order
SLOTS = ("article", "size", "color", "shape", "position")


@dataclass(frozen=True)
class Language:
    """One language's lexicon and grammar, as read from its JSON file."""

    code: str
    name: str
    script: str
    data: dict[str, Any]

    @property
    def separator(self) -> str:
        return self.data["separator"]

    def _noun(self, shape: str | None) -> tuple[str, str | None]:
        entry = self.data["shape"][shape] if shape is not None else self.data["generic"]
        return (entry[0], entry[1]) if isinstance(entry, list) else (entry, None)

    @staticmethod
    def _form(entry: Any, gender: str | None) -> str:
        """A word agreeing with ``gender`` (a plain string does not inflect)."""
        return entry if isinstance(entry, str) else entry[gender] if gender in entry else entry["m"]

    def object_phrase(self, shape: str | None = None, color: str | None = None, size: str | None = None,
                      position: str | None = None, article: bool = True) -> str:  # fmt: skip
        """One noun phrase ("eine kleine rote Raute oben links", "左上角的一个小红色菱形"); ``shape``
        None uses the generic noun. Slots left None are left out."""
        noun, gender = self._noun(shape)
        words: list[str] = []
        for slot in self.data["object"]:
            name, _, place = slot.partition(":")
            if name == "article" and article and "article" in self.data:
                words.append(self._form(self.data["article"], gender))
            elif name == "shape":
                words.append(noun)
            elif name == "color" and color is not None:
                words.append(self._form(self.data["color"][color], gender))
            elif name == "size" and size is not None:
                entry = self.data["size"][size]
                if not place or (isinstance(entry, dict) and entry.get("slot", "before") == place):
                    words.append(self._form(entry, gender))
            elif name == "position" and position is not None:
                words.append(self.data["position"][position])
        return self.separator.join(words)

    def join(self, parts: list[str]) -> str:
        """'A, B and C' in this language."""
        return parts[0] if len(parts) == 1 else self.data["list"].join(parts[:-1]) + self.data["and"] + parts[-1]

    def scene(self, objects: str, background: str, template: str | None = None) -> str:
        """The scene template filled with joined noun phrases and the background word."""
        return (template or self.data["scene"]).format(objects=objects, background=self.data["background"][background])

    def photo(self, phrase: str) -> str:
        return self.data["photo"].format(object=phrase)

    def words(self) -> set[str]:
        """Every word of the lexicon and the templates, split on spaces (the characters for zh/ja)."""
        texts: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, str):
                texts.append(value)
            elif isinstance(value, dict):
                for k, v in value.items():
                    if k not in ("slot",):
                        walk(v)
            elif isinstance(value, list):
                for v in value:
                    walk(v)

        for key in ("article", "shape", "generic", "color", "size", "position", "background", "scene", "photo", "paraphrase", "and", "list"):
            walk(self.data.get(key, ""))
        out: set[str] = set()
        for text in texts:
            out.update(w.strip(",.:;،") for w in text.replace("{", " ").replace("}", " ").split())
        return {w for w in out if w}


@lru_cache(maxsize=None)
def language(code: str) -> Language:
    """The language ``code`` (one of ``CODES``); an unknown code is an InputError naming the known ones."""
    if code not in CODES:
        raise InputError(f"unknown language {code!r}; use one of en, {', '.join(CODES)}")
    text = resources.files("cliplab.data").joinpath("lang", f"{code}.json").read_text(encoding="utf-8")
    data = json.loads(text)
    return Language(code=data["code"], name=data["name"], script=data["script"], data=data)
