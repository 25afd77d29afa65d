"""Text, image and composed queries with the bundled model on synthetic scenes, and the mapper."""

import io

import numpy as np
import pytest
from PIL import Image

from cliplab.data.sources import open_source
from cliplab.errors import InputError
from cliplab.search import DeltaMapper, compose, query_vector
from cliplab.search.queries import normalise

from .conftest import SCENES, unit_rows


@pytest.fixture(scope="module")
def items():
    return open_source(SCENES).items


def test_text_query_finds_the_named_colour_and_matches_brute_force(clip, scenes, scene_index):
    q = query_vector(clip, text="a red star")
    hits = scene_index.search(q, k=5)[0]
    assert [h["id"] for h in hits] == [scenes.ids[i] for i in np.argsort(-(scenes.X @ q[0]), kind="stable")[:5]]
    # the bundled model was trained on these scenes: most of the top hits show something red
    assert sum("red" in h["short_caption"] for h in hits) >= 3
    assert hits[0]["caption"] and hits[0]["captions"] == [hits[0]["caption"]]


def test_image_query_finds_the_image_itself_first(clip, scene_index, items):
    image = Image.open(io.BytesIO(items[7].read_bytes()))
    top = scene_index.search(query_vector(clip, image=image), k=3)[0][0]
    assert top["id"] == items[7].id and top["score"] == pytest.approx(1.0, abs=1e-4)


def test_composed_query_moves_towards_the_edit_and_keeps_the_rest(clip, scene_index, items):
    singles = [it for it in items[:40] if " and " not in it.meta["short_caption"]][:12]
    plain_colour = composed_colour = plain_shape = composed_shape = 0
    for it in singles:
        obj = it.meta["objects"][0]
        target = "blue" if obj["color"] != "blue" else "red"
        image = Image.open(io.BytesIO(it.read_bytes()))
        plain = scene_index.search(query_vector(clip, image=image), 10)[0]
        composed = scene_index.search(query_vector(
            clip, image=image, text=f"a {target} {obj['shape']}", source_text=f"a {obj['color']} {obj['shape']}"), 10)[0]
        plain_colour += sum(target in h["short_caption"] for h in plain)
        composed_colour += sum(target in h["short_caption"] for h in composed)
        plain_shape += sum(obj["shape"] in h["short_caption"] for h in plain)
        composed_shape += sum(obj["shape"] in h["short_caption"] for h in composed)
    assert composed_colour >= 2 * plain_colour + 10  # measured: 59 vs 18 hits of the target colour
    assert composed_shape >= 0.7 * plain_shape  # the shape stays


def test_compose_is_the_normalised_moved_image_vector():
    i, t, s = unit_rows(3, 8, seed=1)
    np.testing.assert_allclose(compose(i, t, s, alpha=0.5), normalise(i + 0.5 * (t - s)), rtol=1e-6)
    np.testing.assert_allclose(compose(i, t, s, alpha=0.0), i[None], rtol=1e-6)


def test_query_vector_needs_exactly_one_kind_of_query(clip):
    with pytest.raises(InputError, match="nothing to search"):
        query_vector(clip)
    with pytest.raises(InputError, match="alone"):
        query_vector(clip, text="x", embedding=np.ones(clip.embed_dim))
    with pytest.raises(InputError):
        query_vector(clip, embedding=np.ones(3))
    with pytest.raises(InputError, match="empty"):
        query_vector(clip, text="  ")


def test_delta_mapper_learns_a_known_move_better_than_the_fixed_step():
    d = 16
    rng = np.random.default_rng(0)
    A = np.eye(d) * 0.3 + 0.1 * rng.standard_normal((d, d))  # the true move: i' = normalise(i + A dt)
    I, dT = unit_rows(600, d, seed=2), 0.5 * unit_rows(600, d, seed=3)
    target = normalise(I + dT @ A.T)
    X = np.hstack([I, dT])
    mapper = DeltaMapper(alpha=1e-3).fit(X[:500], target[:500])
    learned = mapper.score(X[500:], target[500:])
    fixed = float(np.mean(np.sum(normalise(I[500:] + dT[500:]) * target[500:], axis=1)))
    assert learned > 0.995 and learned > fixed
    with pytest.raises(Exception, match="not fitted"):
        DeltaMapper().predict(X[:1])
