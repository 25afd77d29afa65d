"""The top-level package: ``cliplab.embed`` is the feature store's function, nothing else."""

from __future__ import annotations

import sys

import cliplab
from cliplab.features import embed


def test_embed_is_the_function_and_no_module_alias_is_registered():
    assert cliplab.embed is embed
    assert "cliplab.embed" not in sys.modules
