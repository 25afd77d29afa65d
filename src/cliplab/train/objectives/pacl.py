"""PACL's patch-aligned contrast (Mukhoti et al., "Open Vocabulary Semantic Segmentation with Patch
Aligned Contrastive Learning", CVPR 2023, Sec. 3) on the student's dense features, from captions alone.

For image i and caption k, each dense token d_ij (normalised) is weighted by how well it matches the
caption, ``a_ij(k) = softmax_j(s <d_ij, t_k>)`` (PACL eq. 3, the logit scale s as the temperature), and
the image's caption-specific embedding is ``q_i(k) = normalise(sum_j a_ij(k) d_ij)`` (eq. 4). The image-
caption score ``s <q_i(k), t_k>`` then enters CLIP's symmetric InfoNCE over the (gathered) batch, repeated
captions as positives. A caption must so find its words in its own image's tokens: the dense features
learn every concept the captions name, boxes or not (no region phrase needed, held-out words included).
Each image's row also holds its caption with the shape word swapped for every other shape, scored the
same way, as negatives only: cliplab's addition, as in ``grain`` (a batch's captions differ in colour,
position and background long before they differ in shape alone). Unlike region phrases, these may name
``--region-exclude`` words: captions name every shape in the images, held-out ones included, and only
a caption-level negative tells a cross's tokens they are not a "heart", which no region phrase may say.

Deviation, said plainly: PACL adds a learned patch embedder (a residual MLP) to a frozen CLIP; here the
tokens are the student's ``naclip`` dense features, trained directly (the ones ``cliplab segment`` and
``encode_regions`` read).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cliplab.train.objectives.base import DistContext, Objective, StepFeatures, normalise, soft_targets


def caption_pooled(tokens: torch.Tensor, text: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(B, K, E) normalised ``q_i(k)``: image i's normalised tokens (B, N, E) pooled by their match to
    each of its K captions (B, K, E)."""
    weights = torch.softmax(scale * torch.einsum("bne,bke->bkn", tokens, text), dim=-1)
    return F.normalize(torch.einsum("bkn,bne->bke", weights, tokens), dim=-1)


def patch_aligned_logits(tokens: torch.Tensor, text: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(B, K) ``s <q_i(k), t_k>`` for normalised tokens (B, N, E) and captions: (K, E) shared by every
    image, or (B, K, E) each image its own."""
    text = text.expand(len(tokens), *text.shape) if text.dim() == 2 else text
    return scale * (caption_pooled(tokens, text, scale) * text).sum(-1)


class PaclObjective(Objective):
    """``pacl``: patch-aligned image-caption contrast on the dense features (see the module docstring)."""

    name = "pacl"
    needs = frozenset({"regions", "caption_swaps"})  # the student's dense features come with the step's regions

    def forward(self, feats: StepFeatures, ctx: DistContext) -> torch.Tensor:
        regions = feats.regions
        if regions is None:
            raise RuntimeError("pacl needs the student's dense features; the trainer did not provide them")
        tokens = F.normalize(regions.student.dense.float().flatten(2).transpose(1, 2), dim=-1)  # (B, N, E)
        all_tokens, all_text = ctx.gather_all(tokens), ctx.gather_all(normalise(feats.text))
        ids = ctx.gather_ids(feats.caption_ids)
        scale = feats.logit_scale.float()
        logits, targets = patch_aligned_logits(all_tokens, all_text, scale), soft_targets(ids, ids)
        to_captions, row_targets = logits, targets
        if regions.caption_swaps is not None and regions.caption_swaps.shape[1]:  # each image's own swapped captions, extra columns of its row
            swapped = patch_aligned_logits(tokens, normalise(regions.caption_swaps), scale)
            swapped = ctx.gather_all(swapped.masked_fill(~regions.caption_swaps_valid, -1e4))  # padding: no mass
            to_captions, row_targets = torch.cat([logits, swapped], 1), torch.cat([targets, torch.zeros_like(swapped)], 1)
        return (F.cross_entropy(to_captions, row_targets) + F.cross_entropy(logits.T, targets)) / 2
