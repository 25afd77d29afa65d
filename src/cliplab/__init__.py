"""cliplab: one toolkit for the CLIP family of vision-language models."""
