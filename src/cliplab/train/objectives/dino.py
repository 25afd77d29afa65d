"""DINO self-distillation (Caron et al., "Emerging Properties in Self-Supervised Vision Transformers",
ICCV 2021): a student image tower and an EMA teacher of it, each followed by a projection head; the
student matches the teacher's centred, sharpened distribution over K prototypes across crops,

    L = 1/|pairs| sum_{g in global} sum_{v != g} H(P_t(x_g), P_s(x_v)),       (Eq. 1; Alg. 1)
    P_t = softmax((g_t(x) - c) / tau_t),   P_s = softmax(g_s(x) / tau_s),
    c <- m c + (1 - m) mean_batch g_t(x_global),                              (centring, Eq. 4)
    theta_t <- lambda theta_t + (1 - lambda) theta_s                           (EMA teacher, §3.1)

with multi-crop: 2 global crops (scale 0.4-1) seen by both, ``n_local`` local crops (scale
0.05-0.4) seen by the student only. cliplab's towers have a fixed positional embedding, so local
crops are resized to the input size too (the paper feeds them at 96 px). Images only: the text
tower is ignored, so ``dino`` alone trains a self-supervised image encoder (the "DINO stand-in").
The trainer feeds the crops (``needs = {"views"}``): ``extras["student_views"]`` (every crop
through the student tower) and ``extras["teacher_views"]`` (the global crops through the teacher).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from cliplab.train.objectives.base import DistContext, Objective, StepFeatures

STUDENT_TEMP = 0.1  # tau_s, the paper's default
TEACHER_TEMP = 0.04  # tau_t (the paper warms it up to 0.07; 0.04 is its start and its stable choice)
CENTER_MOMENTUM = 0.9  # m
TEACHER_MOMENTUM = 0.996  # lambda at the start; cosine to 1 over training (§3.1)


class DinoHead(torch.nn.Module):
    """DINO's projection head: 3-layer MLP (GELU) -> bottleneck -> L2-normalise -> weight-normalised
    linear to ``out_dim`` prototypes (the paper: 2048 hidden, 256 bottleneck, 65536 out; smaller here)."""

    def __init__(self, in_dim: int, out_dim: int = 1024, hidden_dim: int = 256, bottleneck_dim: int = 64) -> None:
        super().__init__()
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(in_dim, hidden_dim), torch.nn.GELU(),
            torch.nn.Linear(hidden_dim, hidden_dim), torch.nn.GELU(),
            torch.nn.Linear(hidden_dim, bottleneck_dim),
        )  # fmt: skip
        self.last = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(bottleneck_dim, out_dim, bias=False))
        with torch.no_grad():  # the paper fixes the weight-norm gain g at 1
            self.last.parametrizations.weight.original0.fill_(1.0)
        self.last.parametrizations.weight.original0.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(F.normalize(self.mlp(x.float()), dim=-1))


def dino_loss(
    student: list[torch.Tensor], teacher: list[torch.Tensor], center: torch.Tensor,
    student_temp: float = STUDENT_TEMP, teacher_temp: float = TEACHER_TEMP,
) -> torch.Tensor:  # fmt: skip
    """Eq. 1: mean over (teacher crop g, student crop v != g) pairs of the cross-entropy between the
    centred, sharpened teacher distribution and the student's, averaged over the batch.

    ``student``: head outputs (B, K) of every crop, the global crops first (same order as ``teacher``).
    ``teacher``: head outputs (B, K) of the global crops (no gradient flows into them).
    """
    targets = [F.softmax((t.detach().float() - center) / teacher_temp, dim=-1) for t in teacher]
    log_probs = [F.log_softmax(s.float() / student_temp, dim=-1) for s in student]
    total, pairs = 0.0, 0
    for g, target in enumerate(targets):
        for v, log_p in enumerate(log_probs):
            if v == g:  # a crop is never compared with itself
                continue
            total = total + (-(target * log_p).sum(-1)).mean()
            pairs += 1
    return total / pairs


def multi_crop(pixels: torch.Tensor, generator: torch.Generator, n_global: int = 2, n_local: int = 4,
               global_scale: tuple[float, float] = (0.4, 1.0), local_scale: tuple[float, float] = (0.05, 0.4)) -> list[torch.Tensor]:  # fmt: skip
    """DINO's multi-crop on an NCHW batch: ``n_global`` then ``n_local`` random resized crops (area
    fraction drawn from the scale range, aspect ratio 3/4-4/3) with a random horizontal flip, each
    resized back to the input size."""
    n, _, h, w = pixels.shape
    out = []
    for i in range(n_global + n_local):
        lo, hi = global_scale if i < n_global else local_scale
        crops = []
        for j in range(n):
            u = torch.rand(4, generator=generator).tolist()
            area = (lo + (hi - lo) * u[0]) * h * w
            ratio = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[1])
            ch = max(1, min(h, round(math.sqrt(area / ratio))))
            cw = max(1, min(w, round(math.sqrt(area * ratio))))
            top, left = int(u[2] * (h - ch + 1)), int(u[3] * (w - cw + 1))
            crop = pixels[j : j + 1, :, top : top + ch, left : left + cw]
            crop = F.interpolate(crop.float(), size=(h, w), mode="bilinear", align_corners=False)
            if torch.rand(1, generator=generator).item() < 0.5:
                crop = crop.flip(-1)
            crops.append(crop)
        out.append(torch.cat(crops).to(pixels.dtype))
    return out


class DinoObjective(Objective):
    """``dino``: the loss of :func:`dino_loss` with the centre and the EMA teacher kept here.

    ``attach(clip_module)`` (the trainer calls it) copies the image tower as the teacher; after each
    optimizer step the trainer calls ``update_teacher(clip_module, progress)`` (EMA of the tower and
    the head, momentum cosine from ``teacher_momentum`` to 1 as ``progress`` goes 0 -> 1).
    """

    name = "dino"
    needs = frozenset({"views"})
    global_scale: tuple[float, float] = (0.4, 1.0)  # crop area fractions, as multi_crop takes them
    local_scale: tuple[float, float] = (0.05, 0.4)
    anneal_momentum = True  # lambda cosine from teacher_momentum to 1 (DINO); False keeps it fixed (SILC / RS-M-CLIP)

    def __init__(self, embed_dim: int | None = None, out_dim: int = 1024, n_local: int = 4,
                 student_temp: float = STUDENT_TEMP, teacher_temp: float = TEACHER_TEMP,
                 center_momentum: float = CENTER_MOMENTUM, teacher_momentum: float = TEACHER_MOMENTUM) -> None:  # fmt: skip
        super().__init__()
        self.out_dim, self.n_local = out_dim, n_local
        self.student_temp, self.teacher_temp = student_temp, teacher_temp
        self.center_momentum, self.teacher_momentum = center_momentum, teacher_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.head: DinoHead | None = None
        self.teacher_head: DinoHead | None = None
        self.teacher_tower: torch.nn.Module | None = None
        if embed_dim is not None:
            self._build_heads(embed_dim)

    def _build_heads(self, embed_dim: int) -> None:
        self.head = DinoHead(embed_dim, self.out_dim)
        self.teacher_head = copy.deepcopy(self.head).requires_grad_(False)

    def attach(self, clip_module: torch.nn.Module, embed_dim: int) -> None:
        """Make the heads (if not made) and the teacher: a frozen copy of ``clip_module.visual``."""
        if self.head is None:
            self._build_heads(embed_dim)
        self.teacher_tower = copy.deepcopy(clip_module.visual).requires_grad_(False).eval()

    @torch.no_grad()
    def teacher_features(self, crops: list[torch.Tensor]) -> list[torch.Tensor]:
        """The teacher tower's features of the global crops."""
        return [self.teacher_tower(c.to(next(self.teacher_tower.parameters()).dtype)).float() for c in crops]

    @torch.no_grad()
    def update_teacher(self, clip_module: torch.nn.Module, progress: float) -> None:
        """theta_t <- lambda theta_t + (1 - lambda) theta_s, lambda cosine from teacher_momentum to 1."""
        lam = 1 - (1 - self.teacher_momentum) * (math.cos(math.pi * min(max(progress, 0.0), 1.0)) + 1) / 2
        if not self.anneal_momentum:
            lam = self.teacher_momentum
        for teacher, student in ((self.teacher_tower, clip_module.visual), (self.teacher_head, self.head)):
            for t, s in zip(teacher.parameters(), student.parameters()):
                t.mul_(lam).add_(s.detach().to(t.dtype), alpha=1 - lam)

    @torch.no_grad()
    def update_center(self, teacher_out: list[torch.Tensor], ctx: DistContext) -> None:
        """c <- m c + (1 - m) mean of the teacher outputs (over every rank's rows)."""
        batch = ctx.gather_all(torch.cat(teacher_out).float())
        self.center.mul_(self.center_momentum).add_(batch.mean(0, keepdim=True), alpha=1 - self.center_momentum)

    def forward(self, feats: StepFeatures, ctx: DistContext) -> torch.Tensor:
        student_views, teacher_views = feats.extras.get("student_views"), feats.extras.get("teacher_views")
        if student_views is None or teacher_views is None or self.head is None:
            raise RuntimeError("dino needs the crops' features; the trainer did not provide them")
        student = [self.head(s) for s in student_views]
        with torch.no_grad():
            teacher = [self.teacher_head(t) for t in teacher_views]
        loss = dino_loss(student, teacher, self.center, self.student_temp, self.teacher_temp)
        if self.training:
            self.update_center(teacher, ctx)
        return loss
