"""The HTML report builder and the figures it inlines."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from cliplab.evaluate import plots
from cliplab.evaluate.report import Report, format_value, table_html

PNG = b"\x89PNG\r\n\x1a\n"


def _tile(colour) -> Image.Image:
    return Image.new("RGB", (24, 24), colour)


@pytest.fixture(scope="module")
def cm_png() -> bytes:
    cm = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    return plots.confusion_matrix_png(cm, ["cat", "dog", "bird"])


# --- plots ---------------------------------------------------------------------------------------
def test_figures_are_png(cm_png):
    rng = np.random.default_rng(0)
    names = [f"class {i}" for i in range(50)]
    figures = [
        cm_png,
        plots.confusion_matrix_png(rng.integers(0, 9, (50, 50)), names),
        plots.per_class_bars_png(dict(zip(names, rng.random(50)))),
        plots.per_class_bars_png({"a": 0.5, "b": float("nan")}),
        plots.retrieval_grid_png(["a red circle", "a blue square"], [[_tile("red"), _tile("blue")], [_tile("blue")]],
                                 [[True, False], [True]], [[0.9, 0.2], [0.8]]),  # fmt: skip
        plots.error_grid_png([_tile("red"), np.zeros((8, 8, 3), np.uint8)], ["cat", "dog"], ["dog", "cat"], [0.7, 0.6]),
    ]
    for png in figures:
        assert png.startswith(PNG)
        assert Image.open(io.BytesIO(png)).size[0] > 100
    for grid in figures[4:]:  # the image tiles themselves are drawn, not just the frame
        pixels = np.asarray(Image.open(io.BytesIO(grid)).convert("RGB")).reshape(-1, 3).astype(int)
        assert (np.abs(pixels - [255, 0, 0]).sum(1) < 10).sum() > 100


def test_confusion_matrix_shows_the_counts():
    import matplotlib.figure

    texts = []
    real = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        texts.extend(t.get_text() for ax in fig.axes for t in ax.texts)
        return real(fig, *args, **kwargs)

    matplotlib.figure.Figure.savefig = spy
    try:
        plots.confusion_matrix_png(np.array([[3, 1], [0, 4]]), ["cat", "dog"])
    finally:
        matplotlib.figure.Figure.savefig = real
    assert {"0.75", "0.25", "1.00"} <= set(texts)  # cells annotated with row-normalised rates


def test_plot_inputs_are_checked():
    with pytest.raises(ValueError, match="class names"):
        plots.confusion_matrix_png(np.zeros((3, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="one entry per query"):
        plots.retrieval_grid_png(["q"], [], [])
    with pytest.raises(ValueError, match="at least one image"):
        plots.image_grid_png([], [])


def test_data_uri_round_trips(cm_png):
    uri = plots.to_data_uri(cm_png)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == cm_png


# --- report --------------------------------------------------------------------------------------
def test_format_value():
    assert format_value(0.123456) == "0.1235"
    assert format_value(np.float32(0.5)) == "0.5000"
    assert format_value(float("nan")) == "–"
    assert format_value(None) == "–"
    assert format_value(3) == "3"
    assert format_value("<b>") == "&lt;b&gt;"


def test_tables_from_dict_and_rows():
    kv = table_html({"acc1": 0.5, "model": "m<1>"})
    assert "<th>acc1</th>" in kv and "0.5000" in kv and "m&lt;1&gt;" in kv
    rows = table_html([{"class": "cat", "recall": 1.0}, {"class": "dog", "support": 3}])
    assert re.search(r"<th>class</th><th>recall</th><th>support</th>", rows)
    assert rows.count("<tr>") == 3  # header + 2 rows


def test_report_is_self_contained(tmp_path, cm_png):
    report = (
        Report("Eval <run>", subtitle="tiny model")
        .add_table("Metrics", {"acc1": 0.75, "acc5": 1.0})
        .add_figure("Confusion matrix", cm_png, caption="rows normalised")
        .add_html("Notes", "<p id='free'>free html</p>")
        .add_text("Text", "a < b")
    )
    path = report.save(tmp_path / "sub" / "report.html")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "<title>Eval &lt;run&gt;</title>" in text
    assert text.count("data:image/png;base64,") == 1
    assert "<h2>Metrics</h2>" in text and "<h2>Confusion matrix</h2>" in text
    assert "<p id='free'>free html</p>" in text and "a &lt; b" in text
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)  # no external assets
    embedded = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text).group(1)
    assert base64.b64decode(embedded) == cm_png
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temporary file left


def test_save_replaces_existing_file(tmp_path):
    path = tmp_path / "r.html"
    path.write_text("old")
    Report("new").save(path)
    assert "<h1>new</h1>" in path.read_text()
