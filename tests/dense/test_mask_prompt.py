"""OVSeg mask prompt tuning wired into cliplab.segment's region relabelling, OVSegmenter's crop classifier
and the CLI: the prompt changes region embeddings exactly as a direct computation says; save/load."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cliplab.data import synthetic
from cliplab.dense import Segmenter
from cliplab.dense.ovseg import MASK_PROMPT, OVSegmenter
from cliplab.dense.regions import MaskPrompt, masked_crops, region_probabilities, train_mask_prompt
from cliplab.errors import InputError
from cliplab.models.vision_parts import vision_parts
from cliplab.zeroshot.templates import ensemble_text_weights

NAMES = ["circle", "square", "star"]


def prompt_for(model, depth: int, seed: int = 0) -> MaskPrompt:
    parts = vision_parts(model)
    x, grid = parts.embed(torch.zeros(1, 3, 32, 32))
    torch.manual_seed(seed)
    return MaskPrompt(depth, grid[0] * grid[1], x.shape[-1])


def direct_encoding(model, prompt: MaskPrompt, pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One crop, written out: a patch with no mask pixel is blank; its token is the prompt's row for
    that patch at the input and before each of the first ``depth`` blocks (OVSeg's mask prompt)."""
    parts = vision_parts(model)
    x, (gh, gw) = parts.embed(pixels[None])
    side = mask.shape[0] // gh
    for d, block in enumerate(parts.blocks):
        if d < len(prompt.embedding):
            x = x.clone()
            for i in range(gh):
                for j in range(gw):
                    if not mask[i * side : (i + 1) * side, j * side : (j + 1) * side].any():
                        x[0, 1 + i * gw + j] = prompt.embedding[d, i * gw + j]
        x = block(x)
    return parts.head(x)[0, 0]


@torch.no_grad()
def test_prompt_encoding_against_a_direct_computation(tiny_model):
    prompt = prompt_for(tiny_model, depth=2)
    pixels = torch.randn(3, 32, 32)
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[3:14, 10:30] = True  # some patches inside, some partly, the rest blank
    got = prompt.encode(tiny_model, vision_parts(tiny_model), pixels[None], mask[None])[0]
    torch.testing.assert_close(got, direct_encoding(tiny_model, prompt, pixels, mask))
    full = prompt.encode(tiny_model, vision_parts(tiny_model), pixels[None], torch.ones(1, 32, 32, dtype=torch.bool))
    torch.testing.assert_close(full, tiny_model.torch_module.encode_image(pixels[None]))  # nothing blank: the plain tower
    assert not torch.allclose(got, tiny_model.torch_module.encode_image(pixels[None])[0])


def test_segment_regions_use_the_prompt_on_masked_crops(tiny_model):
    image = Image.fromarray(np.random.default_rng(4).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    prompt = prompt_for(tiny_model, depth=1, seed=3)
    plain = Segmenter(tiny_model, NAMES, background=None, threshold=0.0)(image)  # every pixel is foreground: one region
    region = plain.labels > 0
    text = torch.from_numpy(ensemble_text_weights(tiny_model, NAMES, "default"))
    probs = region_probabilities(tiny_model, image, [region], text, prompt=prompt)
    crops, crop_masks = masked_crops(tiny_model, image, region[None], expand=0.1)
    with torch.no_grad():
        emb = F.normalize(direct_encoding(tiny_model, prompt, crops[0], crop_masks[0]), dim=-1)
    np.testing.assert_allclose(probs[0], torch.softmax(tiny_model.logit_scale * emb @ text.T, -1).numpy(), atol=1e-5)
    seg = Segmenter(tiny_model, NAMES, background=None, threshold=0.0, regions=True, region_min_pixels=1, mask_prompt=prompt)(image)
    assert (seg.labels == 1 + probs[0].argmax()).all()
    np.testing.assert_allclose(seg.probs[1:, region].mean(1), probs[0], atol=1e-5)
    with pytest.raises(InputError, match="regions=True"):
        Segmenter(tiny_model, NAMES, mask_prompt=prompt)


def test_prompt_tuning_keeps_unseen_shapes_out(tiny_model):
    with pytest.raises(InputError, match="no object of heart"):
        train_mask_prompt(tiny_model, depth=1, n_scenes=1, steps=1, classes=["heart"])


def test_segmenter_tunes_saves_and_loads_its_prompt(tiny_model, tmp_path):
    seg = OVSegmenter(tiny_model, queries=2, dim=8).fit("synthetic:8", classes=NAMES, steps=1, batch_size=2, mask_prompt_steps=2,
                                                        out=tmp_path / "seg")  # fmt: skip
    assert seg.mask_prompt is not None and (tmp_path / "seg" / MASK_PROMPT).is_file()
    assert json.loads((tmp_path / "seg" / "ovsegmenter.json").read_text())["mask_prompt"] is True
    image = synthetic.scene(0, image_size=32, split="test").image
    masks = np.zeros((1, 32, 32), dtype=bool)
    masks[0, 4:20, 6:8] = masks[0, 4:6, 6:22] = True  # an L: its crop has blank patches
    crops, crop_masks = masked_crops(seg.tuned, image, masks)
    with torch.no_grad():
        emb = F.normalize(direct_encoding(seg.tuned, seg.mask_prompt, crops[0], crop_masks[0]), dim=-1)
        text = seg.text(NAMES)
        torch.testing.assert_close(seg.crop_logits(crops, crop_masks, text)[0], tiny_model.logit_scale * emb @ text.T)
    again = OVSegmenter.load(tmp_path / "seg", model=tiny_model)
    torch.testing.assert_close(again.mask_prompt.embedding, seg.mask_prompt.embedding)
    np.testing.assert_allclose(again.classify(image, masks, NAMES), seg.classify(image, masks, NAMES), atol=1e-6)
    again.mask_prompt = None  # the prompt is what changes the crop classifier
    assert not np.allclose(again.classify(image, masks, NAMES), seg.classify(image, masks, NAMES), atol=1e-6)


def test_cli_mask_prompt(cli, tiny_model_files, tmp_path):
    model = ["--model", tiny_model_files["spec"], "--pretrained", str(tiny_model_files["weights"])]
    prompt = tmp_path / "prompt.safetensors"
    result = cli("segmenter", "prompt", *model, "--steps", "2", "--scenes", "8", "--depth", "1", "--out", prompt)
    assert result.exit_code == 0, result.output
    assert MaskPrompt.load(prompt).embedding.shape[0] == 1
    image = tmp_path / "in.png"
    synthetic.scene(0, image_size=32, split="test").image.save(image)
    base = ["segment", "--image", image, "--classes", "circle,star", *model]
    result = cli(*base, "--regions", "--mask-prompt", prompt, "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s" / "areas.json").read_text())["classes"] == ["background", "circle", "star"]
    report = tmp_path / "r.json"
    result = cli("eval", "--task", "segmentation", "--images", "synthetic:2:1", *model, "--regions", "--mask-prompt", prompt,
                 "--out", report, "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["settings"]["regions"] is True
    result = cli(*base, "--mask-prompt", prompt, "--out", tmp_path / "x")
    assert result.exit_code == 2 and "--regions" in result.stderr and "Traceback" not in result.output
    result = cli("segmenter", "train", *model, "--images", "synthetic:6", "--classes", "circle,square,star", "--steps", "1",
                 "--batch-size", "2", "--mask-prompt-steps", "1", "--out", tmp_path / "seg", "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "seg" / MASK_PROMPT).is_file()
    result = cli("segment", "--image", image, "--classes", "heart,star", "--segmenter", tmp_path / "seg", "--out", tmp_path / "t")
    assert result.exit_code == 0, result.output
    result = cli("segment", "--image", image, "--classes", "heart", "--segmenter", tmp_path / "seg", "--mask-prompt", prompt,
                 "--out", tmp_path / "u")  # fmt: skip
    assert result.exit_code == 2 and "carries its own" in result.stderr
