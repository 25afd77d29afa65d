"""Training and post-training: the trainer, objectives, long text, caption rewrites, curation."""

from cliplab.train.config import TrainConfig
from cliplab.train.trainer import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
