"""Training and post-training: the trainer, objectives, long text, caption rewrites, curation, CLIP-MoE upcycling."""

from cliplab._lazy import lazy_exports
from cliplab.train.config import TrainConfig, UpcycleConfig

__all__ = ["TrainConfig", "TrainResult", "UpcycleConfig", "train", "upcycle_model"]
# the trainer (and torch) load on first use, so the command line's options cost no torch import
__getattr__, __dir__ = lazy_exports("cliplab.train", {**dict.fromkeys(("TrainResult", "train"), "cliplab.train.trainer"),
                                                     "upcycle_model": "cliplab.train.upcycle"}, globals())
