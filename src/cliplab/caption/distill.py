"""LightCap's ensemble distillation (Wang et al., AAAI 2023, arXiv 2212.08985, sections 3.4 and 4.3):
a small student captioner learns the output token distributions of bigger teacher captioners.

Teachers are captioners trained on the same captions (differently seeded, a deeper or wider decoder).
On each training batch they run teacher-forced over the student's captions, and the student's loss is

    L = (1 - alpha) * CE(y, p_s) + alpha * T^2 * KL(q_T || softmax(z_s / T))      (Hinton et al. 2015, eq. 2)

averaged over the caption tokens (padding left out), plus the student's usual concept BCE. The target
``q_T`` is either the ensemble's averaged tempered distribution, ``mean_m softmax(z_m / T)`` (one student
head), or, with as many student heads as teachers, teacher ``m``'s own ``softmax(z_m / T)`` for head ``m``
(LightCap's ensemble heads, each distilled from a differently trained teacher; the heads' distributions
are averaged at inference, ``cliplab.caption.network.combine_heads``). ``T^2`` keeps the soft term's
gradients at the scale of the hard one's as ``T`` changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cliplab.errors import InputError

Tensor = torch.Tensor


def ensemble_targets(teacher_logits: Tensor, heads: int, temperature: float) -> Tensor:
    """Teachers' logits (M, B, L, V) -> the student heads' targets (B, L, H, V): the teachers' averaged
    tempered distributions for one head (H = 1), or teacher ``m``'s for head ``m`` (H = M)."""
    probs = torch.softmax(teacher_logits.float() / temperature, dim=-1)
    if heads == 1:
        return probs.mean(dim=0).unsqueeze(-2)
    if heads != probs.shape[0]:
        raise InputError(f"{heads} ensemble heads for {probs.shape[0]} teachers; use 1 head (the averaged teachers) or one head per teacher")
    return probs.movedim(0, -2)


def distillation_loss(head_logits: Tensor, targets: Tensor, mask: Tensor, temperature: float) -> Tensor:
    """``T^2`` times the mean over heads and the tokens where ``mask`` (B, L) is true of
    ``KL(targets || softmax(head_logits / T))``; ``head_logits`` and ``targets`` are (B, L, H, V)."""
    log_student = torch.log_softmax(head_logits.float() / temperature, dim=-1)
    kl = (torch.xlogy(targets, targets) - targets * log_student).sum(-1)  # (B, L, H); 0 log 0 = 0
    return temperature**2 * kl[mask].mean()


class Teachers:
    """Fitted captioners whose averaged (or per-head) tempered token distributions a student learns.

    They must read the same caption features (the same model and grid) and write over the same caption
    vocabulary (trained on the same captions), which the student then takes as its own."""

    def __init__(self, captioners: Sequence, feature_name: str) -> None:
        if not captioners:
            raise InputError("distillation needs at least one teacher captioner")
        for cap in captioners:
            if not hasattr(cap, "net_"):
                raise InputError("a teacher captioner is not fitted; load it with Captioner.load(DIR) or fit it first")
            if cap.feature_model().name != feature_name:
                raise InputError(f"a teacher reads {cap.feature_model().name}, the student {feature_name}; teachers and student need the same model and grid")
        vocab = captioners[0].vocab_
        if any(cap.vocab_.model_ids != vocab.model_ids for cap in captioners[1:]):
            raise InputError("the teachers were trained on different caption vocabularies; distill from teachers trained on the same captions")
        self.captioners, self.vocab = list(captioners), vocab

    def __len__(self) -> int:
        return len(self.captioners)

    @torch.no_grad()
    def logits(self, image: Tensor, grid: Tensor, tokens: Tensor) -> Tensor:
        """(M, B, L, V): each teacher's next-token logits (eval mode) after each prefix of ``tokens`` (B, L)."""
        out = []
        for cap in self.captioners:
            net = cap.net_.eval()
            memory, _ = net.memory(image, grid)
            out.append(net(memory, tokens))
        return torch.stack(out)
