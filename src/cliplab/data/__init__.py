"""Datasets: sources, synthetic scenes, few-shot splits."""

from cliplab.data.few_shot import few_shot_split

__all__ = ["few_shot_split"]
