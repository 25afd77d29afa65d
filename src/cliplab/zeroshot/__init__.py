"""Zero-shot heads: prompt ensembles, classification by description, contextual attributes."""

from cliplab.zeroshot.classifier import ZeroShotClassifier
from cliplab.zeroshot.contextual import ContextualClassifier, compose_contexts
from cliplab.zeroshot.descriptors import (
    DescriptorClassifier,
    descriptor_prompt,
    load_descriptors,
    make_descriptor_sentence,
)
from cliplab.zeroshot.templates import (
    TEMPLATE_SETS,
    build_prompts,
    builtin_templates,
    ensemble_text_weights,
    resolve_templates,
)

__all__ = [
    "TEMPLATE_SETS",
    "ContextualClassifier",
    "DescriptorClassifier",
    "ZeroShotClassifier",
    "build_prompts",
    "builtin_templates",
    "compose_contexts",
    "descriptor_prompt",
    "ensemble_text_weights",
    "load_descriptors",
    "make_descriptor_sentence",
    "resolve_templates",
]
