"""RS-M-CLIP's global/local crop self-distillation on the image tower (Silva et al., arXiv 2410.23370;
wave-3 reference §16), the DINO objective (``dino``) with the settings the reference's offline
adaptation gives:

- 2 global crops (area 0.4-1) seen by the student and the EMA teacher, 4 local crops (area 0.1-0.4,
  since 0.05 of a 64 px scene is too small) seen by the student only;
- K = 256 prototypes, teacher temperature 0.04, student 0.1, centring as in DINO;
- the EMA momentum fixed at 0.996 (SILC: not annealed to 1).

With ``clip`` and translated captions it is RS-M-CLIP's loss ``L = L_CLIP + lambda L_selfdist``
(lambda = 1): ``cliplab train --objectives clip,selfdist --languages en,de,zh,...``. The CLIP term
sees the uncropped image (SILC applies it to each global view; not done here).
"""

from __future__ import annotations

from cliplab.train.objectives.dino import DinoObjective

PROTOTYPES = 256
MOMENTUM = 0.996


class SelfDistillObjective(DinoObjective):
    """``selfdist``: :class:`DinoObjective` with RS-M-CLIP's crops, prototypes and fixed momentum."""

    name = "selfdist"
    local_scale = (0.1, 0.4)
    anneal_momentum = False

    def __init__(self, embed_dim: int | None = None) -> None:
        super().__init__(embed_dim, out_dim=PROTOTYPES, n_local=4, teacher_momentum=MOMENTUM)
