"""Evaluation tasks beyond zero-shot accuracy, one module each; every runner returns a typed result
(a ``TaskResult`` subclass with ``to_json()``) and every module has a ``report(result)``."""

from cliplab.evaluate.tasks.base import EmbedOptions, TaskResult

__all__ = ["EmbedOptions", "TaskResult"]
