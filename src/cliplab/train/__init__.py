"""Training and post-training: the trainer, objectives, long text, caption rewrites, curation, CLIP-MoE
upcycling, un²CLIP."""

from cliplab._lazy import lazy_exports
from cliplab.train.config import TrainConfig, UpcycleConfig

__all__ = ["TrainConfig", "TrainResult", "Un2ClipConfig", "Un2ClipResult", "UpcycleConfig", "run_un2clip", "save_un2clip", "train",
           "upcycle_model"]  # fmt: skip
# the trainer (and torch) load on first use, so the command line's options cost no torch import
__getattr__, __dir__ = lazy_exports("cliplab.train", {
    **dict.fromkeys(("TrainResult", "train"), "cliplab.train.trainer"),
    "upcycle_model": "cliplab.train.upcycle",
    **dict.fromkeys(("Un2ClipConfig", "Un2ClipResult", "run_un2clip", "save_un2clip"), "cliplab.train.un2clip"),
}, globals())
