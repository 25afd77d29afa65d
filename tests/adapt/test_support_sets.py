"""The support-set builder with each source: retrieval, generation (scene renderer, diffusers), captions."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from PIL import Image

from cliplab.adapt import SupportSetAdapter
from cliplab.adapt.support_sets import (
    CaptionSource,
    DiffusersGenerator,
    GenerationSource,
    RetrievalSource,
    SceneGenerator,
    build_support_set,
    parse_scene_prompt,
    retrieve,
    support_set_adapter,
)
from cliplab.errors import InputError


def unit(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


class FakeModel:
    """Texts map to fixed vectors; an image's vector is the row of ``images`` its red value names."""

    logit_scale = 10.0
    embed_dim = 4

    def __init__(self, texts: dict[str, np.ndarray], images: np.ndarray):
        self.texts, self.images = texts, images
        self.encoded_texts: list[str] = []

    def encode_texts(self, texts):
        self.encoded_texts += list(texts)
        return unit([self.texts.get(t, np.ones(4)) for t in texts])

    def encode_images(self, images):
        return unit([self.images[im.getpixel((0, 0))[0]] for im in images])


def image(i: int) -> Image.Image:
    return Image.new("RGB", (2, 2), (i, 0, 0))


PROMPTS = {"a": ["prompt a"], "b": ["prompt b"]}
TEXTS = {"prompt a": np.array([1.0, 0, 0, 0]), "prompt b": np.array([0, 1.0, 0, 0])}
# pool rows: 0-2 near a (0 nearest), 3-5 near b (5 nearest), 6 between
POOL = unit([[1, 0, 0, 0], [0.9, 0.1, 0.3, 0], [0.8, 0.05, 0.6, 0],
             [0.1, 0.8, 0.5, 0], [0.05, 0.9, 0.3, 0], [0, 1, 0, 0], [0.55, 0.5, 0, 0.7]])  # fmt: skip


# --- retrieval ----------------------------------------------------------------------------------
def test_retrieval_returns_the_top_k_pool_items_per_class_text():
    model = FakeModel(TEXTS, POOL)
    support = build_support_set(model, PROMPTS, [RetrievalSource(POOL, k=2)])
    assert support.ids == ["0", "1", "5", "4"]  # best first, per class in the order given
    assert support.labels.tolist() == ["a", "a", "b", "b"]
    np.testing.assert_allclose(support.X, POOL[[0, 1, 5, 4]])
    assert support.sources == ["retrieval"] * 4 and support.caption_features is None


def test_retrieval_direct_computation_and_exclusive_assignment():
    rng = np.random.default_rng(0)
    X, W = unit(rng.normal(size=(50, 8))), unit(rng.normal(size=(3, 8)))
    rows, labels = retrieve(X, W, 5, exclusive=False)
    S = X @ W.T
    for c in range(3):
        assert rows[labels == c].tolist() == np.argsort(-S[:, c])[:5].tolist()
    rows, labels = retrieve(X, W, 5, exclusive=True)
    assert len(set(rows.tolist())) == len(rows)  # no image in two classes
    assert (S[rows].argmax(1) == labels).all()


def test_retrieval_from_a_search_index_and_from_a_folder(tmp_path, tiny_model):
    from cliplab.features import Features
    from cliplab.search import SearchIndex

    index = SearchIndex.build(Features(POOL, [f"img{i}" for i in range(len(POOL))], model="fake"), key="Flat")
    support = build_support_set(FakeModel(TEXTS, POOL), PROMPTS, [RetrievalSource(index, k=1)])
    assert support.ids == ["img0", "img5"]
    index.save(tmp_path / "index")  # the folder cliplab index build writes
    support = build_support_set(FakeModel(TEXTS, POOL), PROMPTS, [RetrievalSource(str(tmp_path / "index"), k=2)])
    assert support.ids == ["img0", "img1", "img5", "img4"]
    exclusive = build_support_set(FakeModel(TEXTS, POOL), PROMPTS, [RetrievalSource(index, k=4, exclusive=True)])
    assert exclusive.ids == ["img0", "img1", "img2", "img6", "img5", "img4", "img3"]  # img6 is nearer a than b
    images = build_support_set(FakeModel(TEXTS, POOL), PROMPTS, [RetrievalSource([image(i) for i in range(7)], k=1)])
    assert images.ids == ["0", "5"]  # a list of PIL images, encoded by the model

    folder = tmp_path / "pool"
    folder.mkdir()
    colours = [(250, 20, 20), (240, 30, 30), (20, 20, 250), (30, 30, 240)]
    for i, c in enumerate(colours):
        Image.new("RGB", (40, 40), c).save(folder / f"{i}.png")
    support = build_support_set(tiny_model, {"red": ["red"], "blue": ["blue"]},
                                [RetrievalSource(str(folder), k=1, embed_options={"cache_dir": tmp_path / "cache"})])  # fmt: skip
    assert len(support) == 2 and all(i.endswith(".png") for i in support.ids)
    X = tiny_model.encode_images([Image.open(folder / f"{i}.png") for i in range(4)])
    W = tiny_model.encode_texts(["red", "blue"])
    assert [i.rsplit("/", 1)[-1] for i in support.ids] == [f"{int(np.argmax(X @ w))}.png" for w in W]


def test_retrieval_refuses_a_pool_of_another_width_or_model():
    from cliplab.features import Features

    with pytest.raises(InputError, match="same model"):
        build_support_set(FakeModel(TEXTS, POOL), PROMPTS, [RetrievalSource(unit(np.ones((3, 6))), k=1)])
    model = FakeModel(TEXTS, POOL)
    model.name, model.identity = "fake", "fake|sha256=aaa"
    other = Features(POOL, [str(i) for i in range(len(POOL))], model="other", identity="other|sha256=bbb")
    with pytest.raises(InputError, match="another model"):
        build_support_set(model, PROMPTS, [RetrievalSource(other, k=1)])
    same = Features(POOL, [str(i) for i in range(len(POOL))], model="fake", identity="fake|sha256=aaa")
    assert len(build_support_set(model, PROMPTS, [RetrievalSource(same, k=1)])) == 2


# --- generation ---------------------------------------------------------------------------------
class RecordingGenerator:
    def __init__(self):
        self.calls: list[tuple[str, int]] = []

    def generate(self, prompt: str, n: int):
        self.calls.append((prompt, n))
        row = {"prompt a": 0, "prompt a2": 1, "prompt b": 5}[prompt]
        return [image(row)] * n


def test_generation_calls_the_generator_with_each_class_prompt():
    gen = RecordingGenerator()
    prompts = {"a": ["prompt a", "prompt a2"], "b": ["prompt b"]}
    support = build_support_set(FakeModel(TEXTS, POOL), prompts, [GenerationSource(gen, n_per_class=5)])
    assert gen.calls == [("prompt a", 3), ("prompt a2", 2), ("prompt b", 5)]  # 5 per class, shared out
    assert support.labels.tolist() == ["a"] * 5 + ["b"] * 5
    np.testing.assert_allclose(support.X[:3], np.repeat(POOL[:1], 3, 0), atol=1e-6)
    np.testing.assert_allclose(support.X[5:], np.repeat(POOL[5:6], 5, 0), atol=1e-6)


def test_generation_refuses_a_generator_that_returns_the_wrong_count():
    class Short:
        def generate(self, prompt, n):
            return [image(0)] * (n - 1)

    with pytest.raises(InputError, match="must return n PIL images"):
        build_support_set(FakeModel(TEXTS, POOL), PROMPTS, [GenerationSource(Short(), n_per_class=3)])
    with pytest.raises(InputError, match="generate"):
        GenerationSource(object())


def test_scene_prompts_parse_to_the_attributes_they_name():
    assert parse_scene_prompt("a shape at the top left") == {"position": "top left"}
    assert parse_scene_prompt("a photo of a small shape") == {"size": "small"}
    assert parse_scene_prompt("A big red star in the top-left corner on a striped background.") == {
        "position": "top left", "size": "large", "color": "red", "shape": "star", "background": "striped"}  # fmt: skip
    assert parse_scene_prompt("a shape on the left") == {"position": "left"}
    assert parse_scene_prompt("a cat") == {}


def test_scene_generator_fixes_what_the_prompt_names_and_varies_the_rest():
    gen = SceneGenerator(seed=3, image_size=48)
    specs = gen.specs("a large shape at the bottom right", 12)
    assert all(s.objects[0].size == "large" and s.objects[0].position == "bottom right" for s in specs)
    assert len({(s.objects[0].shape, s.objects[0].color, s.background) for s in specs}) > 6
    images = gen.generate("a large shape at the bottom right", 3)
    assert [im.size for im in images] == [(48, 48)] * 3
    again = SceneGenerator(seed=3, image_size=48).generate("a large shape at the bottom right", 3)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(images, again))
    assert not np.array_equal(np.asarray(images[0]), np.asarray(SceneGenerator(seed=4, image_size=48).generate("a large shape at the bottom right", 1)[0]))
    assert all(s.objects[0].shape == "star" for s in gen.specs("a star", 5))
    with pytest.raises(InputError, match="names no scene attribute"):
        gen.generate("a cat", 1)


class FakePipeline:
    """The call signature of a diffusers text-to-image pipeline: keyword args, ``.images`` on the result."""

    device = "cpu"

    def __init__(self):
        self.calls: list[dict] = []

    def __call__(self, prompt=None, height=None, width=None, num_inference_steps=50, guidance_scale=7.5,
                 negative_prompt=None, num_images_per_prompt=1, generator=None, output_type="pil", **kwargs):  # fmt: skip
        import torch

        self.calls.append(dict(prompt=prompt, n=num_images_per_prompt, steps=num_inference_steps, height=height,
                               guidance=guidance_scale, **kwargs))  # fmt: skip
        values = torch.randint(0, 255, (num_images_per_prompt,), generator=generator).tolist()

        class Out:
            images = [Image.new("RGB", (8, 8), (v, 0, 0)) for v in values]

        return Out()


def test_diffusers_adapter_calls_the_pipeline_in_batches_with_the_reference_settings():
    pipe = FakePipeline()
    gen = DiffusersGenerator(pipe, batch_size=4, seed=1, height=8)
    images = gen.generate("a photo of a cat", 10)
    assert len(images) == 10 and all(isinstance(im, Image.Image) for im in images)
    assert [c["n"] for c in pipe.calls] == [4, 4, 2]
    assert all(c["prompt"] == "a photo of a cat" and c["steps"] == 85 and c["guidance"] == 9.5 and c["height"] == 8 for c in pipe.calls)
    again = DiffusersGenerator(FakePipeline(), batch_size=4, seed=1, height=8).generate("a photo of a cat", 10)
    assert [im.getpixel((0, 0)) for im in images] == [im.getpixel((0, 0)) for im in again]  # seeded per prompt
    assert "num_images_per_prompt" in inspect.signature(FakePipeline.__call__).parameters
    with pytest.raises(InputError, match="not callable"):
        DiffusersGenerator(object())


def test_diffusers_from_pretrained_says_what_is_missing(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "diffusers", None)  # as when it is not installed
    with pytest.raises(InputError, match="pip install diffusers"):
        DiffusersGenerator.from_pretrained(tmp_path)


# --- captions -----------------------------------------------------------------------------------
CAP_TEXTS = {**TEXTS, "red thing": np.array([0.9, 0, 0.4, 0]), "blue thing": np.array([0, 0.9, 0, 0.4])}


def test_caption_source_keeps_the_given_captions_and_their_features():
    model = FakeModel(CAP_TEXTS, POOL)
    source = CaptionSource([image(1), image(4)], ["a", "b"], captions=["red thing", "blue thing"])
    support = build_support_set(model, PROMPTS, [source])
    assert support.captions == ["red thing", "blue thing"] and support.sources == ["captions"] * 2
    np.testing.assert_allclose(support.X, POOL[[1, 4]], atol=1e-6)
    np.testing.assert_allclose(support.caption_features, unit([CAP_TEXTS["red thing"], CAP_TEXTS["blue thing"]]), atol=1e-6)


def test_caption_source_with_a_captioner_and_a_generator_redraws_from_the_caption():
    model = FakeModel({**CAP_TEXTS, "prompt a. red thing": np.ones(4)}, POOL)
    seen = []

    def captioner(im):
        seen.append(im.getpixel((0, 0))[0])
        return {1: "red thing", 4: "blue thing"}[seen[-1]]

    gen = RecordingGenerator()
    gen.generate = lambda prompt, n: (gen.calls.append((prompt, n)), [image(0)] * n)[1]
    support = build_support_set(model, PROMPTS, [CaptionSource([image(1), image(4)], ["a", "b"], captioner=captioner,
                                                               generator=gen, n_per_caption=2)])  # fmt: skip
    assert seen == [1, 4]
    assert gen.calls == [("prompt a. red thing", 2), ("prompt b. blue thing", 2)]  # CapS: "{class prompt}. {caption}"
    assert support.labels.tolist() == ["a", "a", "b", "b"] and support.captions == ["red thing"] * 2 + ["blue thing"] * 2


def test_mixed_sources_give_every_row_a_caption_feature_and_feed_the_adapter():
    model = FakeModel(CAP_TEXTS, POOL)
    sources = [RetrievalSource(POOL, k=2), CaptionSource([image(2), image(3)], ["a", "b"], captions=["red thing", "blue thing"])]
    head, support = support_set_adapter(model, PROMPTS, sources, alpha=1.0, beta=1.0, gamma=0.0, delta=0.5)
    assert support.sources == ["retrieval"] * 4 + ["captions"] * 2
    np.testing.assert_allclose(support.caption_features[:2], unit([TEXTS["prompt a"]] * 2), atol=1e-6)  # its class prompt
    assert isinstance(head, SupportSetAdapter) and head.support_captions_ is not None and head.delta_ == 0.5
    assert head.predict(POOL[[0, 5]]).tolist() == ["a", "b"]


def test_the_builder_refuses_what_it_cannot_use():
    model = FakeModel(TEXTS, POOL)
    with pytest.raises(InputError, match="no support source"):
        build_support_set(model, PROMPTS, [])
    with pytest.raises(InputError, match="two classes"):
        build_support_set(model, {"a": ["prompt a"]}, [RetrievalSource(POOL)])
    with pytest.raises(InputError, match="not among the classes"):
        build_support_set(model, PROMPTS, [CaptionSource([image(1)], ["c"], captions=["x"])])
    with pytest.raises(InputError, match="one caption per image"):
        CaptionSource([image(1)], ["a"], captions=["x", "y"])
    with pytest.raises(InputError, match="has no item of class 'b'"):
        build_support_set(model, PROMPTS, [CaptionSource([image(1)], ["a"], captions=["red thing"])])
