"""The captioner's trainable parts: concept extractor, cross-modal modulator and a small transformer decoder.

LightCap (Wang et al., AAAI 2023, arXiv 2212.08985, section 3), adapted as wave3_methods.md §10a(5):

- *Modulator*: each of the top-K concepts' text embeddings ``t_k`` gives a channel attention
  ``a_k = sigmoid(W t_k + b)`` over the C channels of the grid tokens; the K attentions are averaged
  and multiply every grid token, ``g_i' = g_i * mean_k a_k`` (how LightCap combines the K
  attentions is not published; the mean is §10a(5)'s choice).
- *Decoder*: a causal transformer decoder (2 layers by default, pre-norm) over the caption tokens,
  cross-attending to the memory ``[modulated grid tokens + their positions; the image embedding;
  the K concept embeddings, each plus its score times a learned vector]``, all projected to the
  decoder's width. The output vocabulary is the caption tokens seen in training (``CaptionVocab``).
- *Ensemble prediction heads* (LightCap section 3.4): ``H`` parallel output layers over the same
  decoder states, their next-token distributions averaged, ``p = mean_h softmax(z_h)``; each head can be
  distilled from its own teacher (``cliplab.caption.distill``).
- *Ablations* (LightCap section 4.3): ``use_concepts=False`` drops the concept extractor, so the
  memory has no concept tokens and the modulator, which reads the retrieved concepts, goes too;
  ``use_modulator=False`` keeps the concept tokens and leaves the grid tokens unmodulated.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cliplab.caption.concepts import ConceptExtractor

Tensor = torch.Tensor


class Modulator(nn.Module):
    """Concept text embeddings (B, K, E) -> the mean of their sigmoid channel attentions, applied to grid tokens (B, n, C)."""

    def __init__(self, embed_dim: int, channels: int) -> None:
        super().__init__()
        self.attention = nn.Linear(embed_dim, channels)

    def forward(self, grid: Tensor, concepts: Tensor) -> Tensor:
        return grid * torch.sigmoid(self.attention(concepts)).mean(dim=1, keepdim=True)


class CaptionNet(nn.Module):
    """Image embedding (B, E) and grid tokens (B, n, C) -> next-token logits over ``vocab_size`` caption tokens."""

    def __init__(self, concept_embeddings: Tensor, embed_dim: int, channels: int, grid_tokens: int, vocab_size: int, *,
                 k: int = 8, width: int = 256, layers: int = 2, heads: int = 4, max_length: int = 40, dropout: float = 0.1,
                 ensemble_heads: int = 1, use_concepts: bool = True, use_modulator: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.k, self.max_length, self.vocab_size, self.ensemble_heads = k, max_length, vocab_size, ensemble_heads
        self.concepts = ConceptExtractor(concept_embeddings) if use_concepts else None
        self.modulator = Modulator(embed_dim, channels) if use_concepts and use_modulator else None
        self.grid_proj = nn.Linear(channels, width)
        self.grid_pos = nn.Parameter(torch.zeros(grid_tokens, width))
        self.image_proj = nn.Linear(embed_dim, width)
        self.concept_proj = nn.Linear(embed_dim, width) if use_concepts else None
        self.concept_score = nn.Parameter(torch.zeros(width)) if use_concepts else None
        self.memory_norm = nn.LayerNorm(width)
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positions = nn.Parameter(torch.zeros(max_length + 1, width))
        layer = nn.TransformerDecoderLayer(width, heads, 4 * width, dropout, activation="gelu", batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.out_norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, ensemble_heads * vocab_size)  # the H heads side by side (one head: the plain output layer)
        for p in (self.grid_pos, self.positions, self.concept_score):
            if p is not None:
                nn.init.normal_(p, std=0.02)

    def memory(self, image: Tensor, grid: Tensor) -> tuple[Tensor, Tensor | None]:
        """(the decoder's memory (B, n + 1 + K, width), the concept logits (B, V) for the multi-label loss;
        without the concept extractor the memory is (B, n + 1, width) and the logits None)."""
        if self.concepts is None:
            parts = [self.grid_proj(grid) + self.grid_pos.to(image.dtype), self.image_proj(image)[:, None, :]]
            return self.memory_norm(torch.cat(parts, dim=1)), None
        indices, scores, logits = self.concepts(image, self.k)
        chosen = self.concepts.embeddings.to(image.dtype)[indices]  # (B, K, E)
        modulated = grid if self.modulator is None else self.modulator(grid, chosen)
        parts = [
            self.grid_proj(modulated) + self.grid_pos.to(image.dtype),
            self.image_proj(image)[:, None, :],
            self.concept_proj(chosen) + scores[..., None].to(image.dtype) * self.concept_score.to(image.dtype),
        ]
        return self.memory_norm(torch.cat(parts, dim=1)), logits

    def head_logits(self, memory: Tensor, tokens: Tensor) -> Tensor:
        """Each ensemble head's logits (B, L, H, vocab) of the token after each prefix of ``tokens`` (B, L), causally."""
        length = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positions[:length].to(memory.dtype)
        mask = torch.triu(torch.full((length, length), float("-inf"), device=tokens.device, dtype=x.dtype), diagonal=1)
        x = self.decoder(x, memory, tgt_mask=mask, tgt_is_causal=True)
        return self.head(self.out_norm(x)).unflatten(-1, (self.ensemble_heads, self.vocab_size))

    def forward(self, memory: Tensor, tokens: Tensor) -> Tensor:
        """Logits (B, L, vocab) of the token after each prefix of ``tokens``: one head's own; with several,
        the log of their averaged distributions (a log-softmax, so softmax/log-softmax of it are unchanged)."""
        return combine_heads(self.head_logits(memory, tokens))


def combine_heads(head_logits: Tensor) -> Tensor:
    """(..., H, V) head logits -> (..., V): the one head's logits, or ``log mean_h softmax(z_h)`` (LightCap's averaged ensemble heads)."""
    if head_logits.shape[-2] == 1:
        return head_logits.squeeze(-2)
    return torch.logsumexp(torch.log_softmax(head_logits.float(), dim=-1), dim=-2).to(head_logits.dtype) - math.log(head_logits.shape[-2])
