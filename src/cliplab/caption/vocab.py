"""The caption vocabulary: the model tokenizer's ids that the training captions use, renumbered densely.

Captions are tokenized with the model's own tokenizer (the CLIP BPE has 49,408 ids; a synthetic
scene's captions use about 60 of them), so the decoder's output layer covers only the ids seen in
training, plus padding, start and end of text; its text comes back through the model's tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cliplab.errors import InputError

PAD, SOT, EOT = 0, 1, 2  # the dense ids of padding, start and end of text
SPECIAL = 3


class CaptionVocab:
    """Dense ids ``3 ..`` for the model token ids ``model_ids`` (in that order); 0, 1, 2 pad, start and end."""

    def __init__(self, model_ids: Sequence[int]) -> None:
        self.model_ids = [int(i) for i in model_ids]
        self.index = {m: SPECIAL + j for j, m in enumerate(self.model_ids)}

    def __len__(self) -> int:
        return SPECIAL + len(self.model_ids)

    @staticmethod
    def _content(model, captions: Sequence[str]) -> list[list[int]]:
        """Each caption's model token ids between start and end of text (truncated to the context length)."""
        eot = int(model.tokenize([""])[0, 1])
        out = []
        for row in model.tokenize(list(captions)).tolist():
            end = row.index(eot) if eot in row else len(row)
            out.append(row[1:end])
        return out

    @classmethod
    def build(cls, model, captions: Sequence[str]) -> CaptionVocab:
        """The ids ``captions`` use, in the order they first appear."""
        seen: dict[int, None] = {}
        for ids in cls._content(model, captions):
            seen.update(dict.fromkeys(ids))
        if not seen:
            raise InputError("the training captions are empty; the captioner needs images with captions")
        return cls(list(seen))

    def encode(self, model, captions: Sequence[str], max_length: int) -> torch.Tensor:
        """(N, max_length + 1) dense ids ``[SOT, tokens..., EOT, PAD...]``, at most ``max_length`` after SOT (EOT kept last)."""
        out = torch.full((len(captions), max_length + 1), PAD, dtype=torch.long)
        for i, ids in enumerate(self._content(model, captions)):
            dense = [self.index[m] for m in ids if m in self.index][: max_length - 1] + [EOT]
            out[i, 0] = SOT
            out[i, 1 : 1 + len(dense)] = torch.tensor(dense)
        return out

    def decode(self, model, dense: Sequence[int]) -> str:
        """The text of dense ids (special ids left out), through the model's tokenizer."""
        ids = [self.model_ids[d - SPECIAL] for d in dense if d >= SPECIAL]
        return model.decode_tokens(ids)
