"""The overlay draws every class in the colour its legend swatch shows."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cliplab.dense.overlay import overlay


def test_each_legend_colour_is_drawn_where_its_class_is():
    labels = np.zeros((24, 30), np.int64)
    labels[3:12, 4:14], labels[14:22, 16:28], labels[:, 29] = 1, 2, 3  # the last class: one column on the border
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 30, 3), dtype=np.uint8))
    classes = ["background", "cat", "dog", "fence"]
    drawn = np.asarray(overlay(image, labels, classes))
    picture = drawn[:24, :30]
    for i in range(len(classes)):
        swatch = drawn[2 + 14 * i + 5, 30 + 9]  # the middle of the legend's i-th swatch
        assert (picture[labels == i] == swatch).all(axis=1).any(), classes[i]
        assert not (picture[labels != i] == swatch).all(axis=1).any()  # and nowhere else


def test_outlines_mark_region_edges_and_the_border():
    from cliplab.dense.overlay import outlines

    labels = np.zeros((6, 6), np.int64)
    labels[2:4, 2:4] = 1
    edge = outlines(labels)
    assert edge[0].all() and edge[:, -1].all() and edge[2:4, 2:4].all()
    assert not edge[4, 4] and not edge[1, 4]
