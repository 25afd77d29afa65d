"""Training objectives, one module each, selectable and combinable with weights: ``clip,hardneg:0.5``.

| name | what |
|---|---|
| clip | CLIP's symmetric InfoNCE (open_clip ``ClipLoss`` semantics, repeated captions as positives) |
| siglip | SigLIP's sigmoid loss (open_clip ``SigLipLoss``) |
| infoloob / cloob | CLOOB's InfoLOOB, without / with modern-Hopfield retrieval |
| hardneg | contrastive loss with hard-negative captions (attribute-swapped) |
| m2mix | geodesic multimodal mixup hard negatives |
| rafa / hycd | CLIP-Refine's random feature alignment / hybrid contrastive distillation |
| distill | cosine feature distillation from a teacher model |
| textdistill | text-tower distillation: a caption in any language -> the teacher's embedding of its English parallel (cosine, MSE or SmoothL1) |
| pcm | Long-CLIP's primary-component matching with short captions |
| dino | DINO self-distillation of the image tower: EMA teacher, centring, sharpening, multi-crop (images only) |
| selfdist | RS-M-CLIP's global/local crop self-distillation: dino with 256 prototypes, local crops 0.1-0.4, fixed EMA momentum |
| fmdistill | DC-CLIP stage 1: distill plus SmoothL1 between the student's last feature map (1x1 adapter) and the teacher's |
| grain | GRAIN's region terms on the dense features: each phrase grounds in its box's tokens, box-pooled tokens against the batch's phrases |
| farslip | FarSLIP: patch-to-patch distillation from the region teacher at 2x resolution, class-token region-phrase multi-positive InfoNCE on box crops |
| declip | DeCLIP: box-pooled dense features vs the teacher's crop embeddings (content), last-block query correlations vs a VFM's patch correlations (context) |
| dclip | DCLIP: box-pooled teacher-to-student region distillation, image distillation towards a region-aggregated teacher, InfoNCE at tau 0.05 |
| pacl | PACL's patch-aligned contrast: each caption pools its image's dense tokens by their match to it, then CLIP's InfoNCE, the caption's shape swaps as extra negatives (captions only, no boxes) |
| cloc | CLOC's region-text InfoNCE and phrase grounding through a box/phrase prompter (needs regions; the model keeps the prompter) |
"""

from __future__ import annotations

from dataclasses import dataclass

from cliplab.errors import InputError
from cliplab.train.objectives.base import DistContext, Objective, StepFeatures
from cliplab.train.objectives.clip import ClipObjective
from cliplab.train.objectives.cloc import ClocObjective
from cliplab.train.objectives.dclip import DClipObjective
from cliplab.train.objectives.declip import DeClipObjective
from cliplab.train.objectives.dino import DinoObjective
from cliplab.train.objectives.distill import DistillObjective
from cliplab.train.objectives.farslip import FarSlipObjective
from cliplab.train.objectives.fmdistill import FeatureMapDistillObjective
from cliplab.train.objectives.grain import GrainObjective
from cliplab.train.objectives.hardneg import HardNegativeObjective
from cliplab.train.objectives.infoloob import CloobObjective, InfoLoobObjective
from cliplab.train.objectives.m2mix import M2MixObjective
from cliplab.train.objectives.pacl import PaclObjective
from cliplab.train.objectives.pcm import PrimaryComponentObjective
from cliplab.train.objectives.refine import HyCDObjective, RaFAObjective
from cliplab.train.objectives.selfdist import SelfDistillObjective
from cliplab.train.objectives.siglip import SigLipObjective
from cliplab.train.objectives.text_distill import TextDistillObjective

REGISTRY: dict[str, type[Objective]] = {
    cls.name: cls
    for cls in (ClipObjective, SigLipObjective, InfoLoobObjective, CloobObjective, HardNegativeObjective,
                M2MixObjective, RaFAObjective, HyCDObjective, DistillObjective, PrimaryComponentObjective, DinoObjective,
                TextDistillObjective, SelfDistillObjective, FeatureMapDistillObjective, GrainObjective, ClocObjective,
                FarSlipObjective, DeClipObjective, DClipObjective, PaclObjective)
}  # fmt: skip


@dataclass(frozen=True)
class WeightedName:
    name: str
    weight: float


def parse_objectives(spec: str) -> list[WeightedName]:
    """'clip,hardneg:0.5' -> [(clip, 1.0), (hardneg, 0.5)]; unknown names and bad weights raise InputError."""
    out: list[WeightedName] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, weight = part.partition(":")
        name = name.strip().lower()
        if name not in REGISTRY:
            raise InputError(f"unknown objective {name!r} in {spec!r}; use any of {', '.join(REGISTRY)}")
        try:
            w = float(weight) if weight.strip() else 1.0
        except ValueError as exc:
            raise InputError(f"objective weight {weight!r} in {spec!r} is not a number; write name:weight, e.g. hardneg:0.5") from exc
        if any(o.name == name for o in out):
            raise InputError(f"objective {name!r} is listed twice in {spec!r}")
        out.append(WeightedName(name, w))
    if not out:
        raise InputError(f"no objective in {spec!r}; name at least one of {', '.join(REGISTRY)}")
    return out


def build_objectives(spec: str, student_dim: int | None = None, teacher_dim: int | None = None,
                     distill_loss: str = "cosine", prompter: str = "block") -> dict[str, tuple[float, Objective]]:  # fmt: skip
    """Objective modules for ``spec``, keyed by name, with their weights (``distill_loss``: textdistill's
    loss; ``prompter``: cloc's region prompter, ``block`` or ``masked-class``)."""
    built = {}
    for item in parse_objectives(spec):
        cls = REGISTRY[item.name]
        if cls is TextDistillObjective:
            objective = cls(student_dim, teacher_dim, loss=distill_loss)
        elif issubclass(cls, DistillObjective):
            objective = cls(student_dim, teacher_dim)
        elif issubclass(cls, DinoObjective):
            objective = cls(student_dim)
        elif cls is ClocObjective:
            objective = cls(prompter)
        else:
            objective = cls()
        built[item.name] = (item.weight, objective)
    return built


__all__ = ["REGISTRY", "DistContext", "Objective", "StepFeatures", "build_objectives", "parse_objectives"]
