"""A small multilingual tokenizer for the synthetic captions, and how many tokens a caption takes.

The CLIP BPE covers every script through bytes, but it was learnt on English text: a Chinese,
Japanese or Arabic caption of a synthetic scene takes 3-4x the tokens of its English original
(``token_lengths`` measures it), so a 48-token text tower truncates most of them. The
``TextTokenizer`` here is a BPE learnt with the ``tokenizers`` package on the captions and
prompts of every language (``train_tokenizer``); it writes one ``tokenizer.json`` and is read
back by ``TextTokenizer.load`` (a bundled model names it in its config as
``text_cfg.tokenizer_file``). Its ids follow the open_clip text tower's conventions: 0 pads,
every text starts with ``<sot>`` and ends with ``<eot>``, and ``<eot>`` has the largest id, so the
tower's argmax pooling reads the end-of-text position as it does with the CLIP BPE.

A transformers tokenizer saved on disk works too: name its folder in ``text_cfg.hf_tokenizer_name``
(open_clip's ``HFTokenizer``, loaded offline).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from cliplab.errors import InputError, ModelLoadError

PAD, UNK, SOT, EOT = "<pad>", "<unk>", "<sot>", "<eot>"


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` wrapped as open_clip tokenizers are: ``tok(texts)`` -> LongTensor
    (N x ``context_length``), zero-padded, truncated with ``<eot>`` kept last."""

    def __init__(self, tokenizer, context_length: int = 48) -> None:
        self.tokenizer = tokenizer
        self.context_length = int(context_length)
        vocab = tokenizer.get_vocab()
        missing = [t for t in (PAD, UNK, SOT, EOT) if t not in vocab]
        if missing:
            raise ModelLoadError(f"tokenizer lacks the special tokens {', '.join(missing)}; make it with cliplab.models.text_tokenizer.train_tokenizer")
        self.pad_id, self.sot_id, self.eot_id = vocab[PAD], vocab[SOT], vocab[EOT]
        if self.eot_id != tokenizer.get_vocab_size() - 1 or self.pad_id != 0:
            raise ModelLoadError(f"tokenizer has {EOT} at id {self.eot_id} and {PAD} at {self.pad_id}; the text tower pools at the largest id, "
                                 f"so {EOT} must be the last id and {PAD} id 0")  # fmt: skip

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size())

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` with ``<sot>`` and ``<eot>``, not truncated."""
        return [self.sot_id, *self.tokenizer.encode(text, add_special_tokens=False).ids, self.eot_id]

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        n = context_length or self.context_length
        out = torch.zeros(len(texts), n, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = self.encode(text)
            if len(ids) > n:
                ids = ids[: n - 1] + [self.eot_id]
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        keep = [int(i) for i in ids if int(i) not in (self.pad_id, self.sot_id, self.eot_id)]
        return self.tokenizer.decode(keep)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``tokenizer.json`` (atomically) at ``path``."""
        from cliplab.files import atomic_write

        path = Path(path)
        atomic_write(path, self.tokenizer.to_str(pretty=False))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, context_length: int = 48) -> TextTokenizer:
        """A tokenizer saved by :meth:`save`."""
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(os.fspath(path))
        except Exception as exc:  # tokenizers raises its own Exception types for missing and bad files
            raise ModelLoadError(f"cannot read the tokenizer file {os.fspath(path)}: {exc}") from exc
        return cls(tok, context_length)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2000, context_length: int = 48, min_frequency: int = 2,
                    max_token_length: int = 8) -> TextTokenizer:
    """A BPE over Unicode characters (NFKC, lower-cased, split before spaces; tokens of at most
    ``max_token_length`` characters) learnt on ``texts``; ids 0-2 are ``<pad>``,
    ``<unk>``, ``<sot>`` and the last id ``<eot>``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if vocab_size < 16:
        raise InputError(f"vocab_size must be at least 16, got {vocab_size}")
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()  # spaces become "▁" on the word after: decoding gives the text back
    tok.decoder = decoders.Metaspace()
    # Tokens of at most ``max_token_length`` characters: in scripts without spaces a whole clause is one
    # "word", and unbounded merges would learn clauses ("中等大小的蓝色正方形") instead of words.
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, min_frequency=min_frequency, special_tokens=[PAD, UNK, SOT],
                                  max_token_length=max_token_length, show_progress=False)  # fmt: skip
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_special_tokens([EOT])  # after training: the largest id
    return TextTokenizer(tok, context_length)


def synthetic_corpus(n_scenes: int = 2000, seed: int = 0, languages: Sequence[str] | None = None) -> list[str]:
    """Captions (full, short, a paraphrase) of ``n_scenes`` train scenes and every attribute prompt,
    in every language of ``languages`` (default: all): the text a scene tokenizer is learnt on."""
    from cliplab.data import synthetic

    languages = list(languages or synthetic.LANGUAGES)
    texts: list[str] = []
    for lang in languages:
        for attribute in synthetic.ATTRIBUTES:
            texts += [p for prompts in synthetic.attribute_prompts(attribute, lang).values() for p in prompts]
    for i in range(n_scenes):
        rng = synthetic.scene_rng(seed, "train", i)
        spec = synthetic.sample_spec(rng, "train", 2)
        for lang in languages:
            texts += [synthetic.full_caption(spec, lang), synthetic.short_caption(spec, lang), synthetic.paraphrase(spec, rng, lang)]
    return texts


def token_lengths(count: Callable[[list[str]], list[int]], n_scenes: int = 200, seed: int = 2026,
                  languages: Sequence[str] | None = None, context_length: int | None = None) -> dict[str, dict[str, float]]:  # fmt: skip
    """Per language, tokens per full caption of ``n_scenes`` test scenes (1-2 objects) as ``count``
    gives them (special tokens included): mean, max and, with ``context_length``, the share truncated."""
    from cliplab.data import synthetic

    specs = [synthetic.sample_spec(synthetic.scene_rng(seed, "test", i), "test", 2) for i in range(n_scenes)]
    out = {}
    for lang in languages or synthetic.LANGUAGES:
        n = np.array(count([synthetic.full_caption(s, lang) for s in specs]))
        row = {"mean": float(n.mean()), "max": int(n.max())}
        if context_length is not None:
            row["truncated"] = float((n > context_length).mean())
        out[lang] = row
    return out
