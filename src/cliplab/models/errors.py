"""The model layer's errors: re-exported from :mod:`cliplab.errors` (one hierarchy)."""

from cliplab.errors import ModelLoadError, brief

__all__ = ["ModelLoadError", "brief"]
