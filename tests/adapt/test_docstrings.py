"""Every head documents its constructor in a numpydoc ``Parameters`` section and its fitted state in an
``Attributes`` section (issue #20 §3)."""

import inspect
import re

import pytest

import cliplab.adapt as adapt
import cliplab.zeroshot as zeroshot
from cliplab.adapt.fixed import TextWeightsHead

HEADS = [
    adapt.GDA, adapt.LinearProbe, TextWeightsHead, adapt.TipAdapter, adapt.TipAdapterF, adapt.SupportSetAdapter,
    adapt.CoOp, adapt.CoCoOp, adapt.CLIPSVD, adapt.NonTransferablePrompt, adapt.LabelFree, adapt.KNNOneClass, adapt.GaussianOneClass, adapt.HypOneClass,
    adapt.TemperatureScaling, adapt.ConformalClassifier,
    zeroshot.ZeroShotClassifier, zeroshot.DescriptorClassifier, zeroshot.ContextualClassifier,
]  # fmt: skip


def section(doc: str, title: str) -> list[str]:
    """The names documented in a numpydoc section (``name : type`` lines; ``a, b : type`` gives two)."""
    match = re.search(rf"^{title}\n-+\n(.*?)(?:\n\n[A-Z][a-z]+\n-+\n|\Z)", doc, flags=re.S | re.M)
    assert match, f"no {title} section"
    names = []
    for line in match.group(1).splitlines():
        if line and not line[0].isspace() and " : " in line:
            names += [n.strip() for n in line.split(" : ")[0].split(",")]
    return names


@pytest.mark.parametrize("cls", HEADS, ids=lambda c: c.__name__)
def test_parameters_and_attributes_sections(cls):
    doc = inspect.getdoc(cls)
    params = [p for p in inspect.signature(cls).parameters]
    assert section(doc, "Parameters") == params
    attributes = section(doc, "Attributes")
    assert attributes and all(a.endswith("_") for a in attributes)
