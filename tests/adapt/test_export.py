"""Choosing and exporting the best head on selection rows that no search saw (``cliplab.adapt.export``)."""

from types import SimpleNamespace

import numpy as np
import pytest

import cliplab.adapt as adapt
from cliplab.adapt.compare import Task, best_method, draw_split, fit_head, run_comparison
from cliplab.adapt.export import describe_export, export_best, selection_rows
from cliplab.errors import CliplabError


def toy_task(toy, selection=True):
    model = SimpleNamespace(logit_scale=100.0, name="toy")  # the embedding heads only read the scale
    y = toy["y"]
    return Task(model, toy["X"], y, toy["X_test"], toy["y_test"], toy["classes"], toy["classes"].tolist(), toy["text"],
                selection=selection_rows(y) if selection else np.zeros(0, np.int64))  # fmt: skip


def test_best_method_is_chosen_on_selection_not_validation():
    # linear overfits its validation search (as measured on the position task: 0.556 there, 31.5% on test)
    records = [
        {"method": "linear", "shots": 4, "seed": 1, "val_accuracy": 0.9, "selection_accuracy": 0.3},
        {"method": "coop", "shots": 4, "seed": 1, "val_accuracy": 0.5, "selection_accuracy": 0.45},
        {"method": "coop", "shots": 1, "seed": 1, "val_accuracy": 0.1, "selection_accuracy": 0.9},  # fewer shots: not compared
    ]
    assert best_method(records, ["linear", "coop"]) == "coop"


def test_selection_rows_are_never_drawn_and_score_every_run(toy):
    task = toy_task(toy)
    counts = np.unique(task.y_pool[task.selection], return_counts=True)[1]
    assert len(counts) == len(task.classes) and counts.min() >= 1  # every class is in the selection
    records = run_comparison(task, ["gda", "tip"], shots=[4], seeds=[1, 2])
    for r in records:
        train, val = draw_split(task.y_pool, 4, r["seed"], task.selection)
        assert not set(task.selection) & (set(train) | set(val))
        head = fit_head(r["method"], task, train, val, r["seed"])
        assert r["selection_accuracy"] == head.score(task.X_pool[task.selection], task.y_pool[task.selection])


def test_export_best_saves_the_head_chosen_on_selection_and_reports_it(toy, tmp_path):
    task = toy_task(toy)
    records = run_comparison(task, ["zeroshot", "gda", "tip"], shots=[2, 4], seeds=[1, 2])
    info = export_best(task, records, tmp_path / "best.cliplab", alpha=0.2)
    at_4 = {m: np.mean([r["selection_accuracy"] for r in records if r["method"] == m and r["shots"] == 4]) for m in ("zeroshot", "gda", "tip")}
    assert info["method"] == max(at_4, key=at_4.get) and info["shots"] == 4 and info["seed"] == 1
    assert info["selection_accuracy"] == pytest.approx(at_4[info["method"]])
    assert info["selection_images"] == len(task.selection)
    back = adapt.load(tmp_path / "best.cliplab")
    assert back.alpha == 0.2 and list(back.classes_) == list(task.classes)
    line = describe_export(info)
    assert f"selection accuracy {info['selection_accuracy']:.3f} on {len(task.selection)} images no search saw" in line


def test_export_needs_selection_rows(toy, tmp_path):
    task = toy_task(toy, selection=False)
    records = run_comparison(task, ["gda"], shots=[2], seeds=[1])
    assert records[0]["selection_accuracy"] is None
    with pytest.raises(CliplabError, match="selection"):
        export_best(task, records, tmp_path / "h.cliplab")
    assert not (tmp_path / "h.cliplab").exists()


def test_too_few_images_per_class_names_the_smallest_class(toy):
    keep = np.r_[np.flatnonzero(toy["y"] != "class03"), np.flatnonzero(toy["y"] == "class03")[:5]]
    task = toy_task({**toy, "X": toy["X"][keep], "y": toy["y"][keep]})  # class03 keeps 5, one of which is for selection
    with pytest.raises(CliplabError, match="16 shots need 17 labelled images of every class .* class 'class03' has 4; use fewer shots"):
        run_comparison(task, ["gda"], shots=[4, 16], seeds=[1])


def test_one_class_is_refused(toy):
    one = toy["y"] == "class00"
    task = toy_task({**toy, "X": toy["X"][one], "y": toy["y"][one], "classes": toy["classes"][:1], "text": toy["text"][:1]})
    with pytest.raises(CliplabError, match="only class 'class00'; comparing classifiers needs at least 2 classes"):
        run_comparison(task, ["gda"], shots=[1], seeds=[1])
