import json

import numpy as np
import pytest

from cliplab.zeroshot import build_prompts, builtin_templates, ensemble_text_weights, resolve_templates
from cliplab.zeroshot.templates import TIP_ADAPTER_TEMPLATES


def test_builtin_sets():
    openai = builtin_templates("openai_imagenet")
    assert len(openai) == 80 and all("{c}" in t for t in openai)
    assert openai[0] == "a bad photo of a {c}."
    assert resolve_templates("tip_adapter") == list(TIP_ADAPTER_TEMPLATES) and len(TIP_ADAPTER_TEMPLATES) == 7
    assert resolve_templates("default") == ["a photo of a {c}."]


def test_placeholders_and_single_template():
    assert resolve_templates(["a {}.", "the {c}."]) == ["a {c}.", "the {c}."]
    assert resolve_templates("a sketch of a {}.") == ["a sketch of a {c}."]
    assert build_prompts(["cat"], ["{c} with {braces}"]) == [["cat with {braces}"]]


@pytest.mark.parametrize("bad", [["a photo of a cat."], "nonexistent_set", [], ["{c}", 3]])
def test_bad_specs_raise_one_line(bad):
    with pytest.raises(ValueError) as e:
        resolve_templates(bad)
    assert "\n" not in str(e.value)


def test_missing_placeholder_message():
    with pytest.raises(ValueError, match=r"has no class placeholder; write \{c\}"):
        resolve_templates(["a photo."])


def test_txt_and_json_files(tmp_path):
    txt = tmp_path / "t.txt"
    txt.write_text("a photo of a {c}.\n\n  art of the {}.  \n")
    assert resolve_templates(str(txt)) == ["a photo of a {c}.", "art of the {c}."]
    js = tmp_path / "t.json"
    js.write_text(json.dumps(["itap of a {}."]))
    assert resolve_templates(js) == ["itap of a {c}."]
    cupl = tmp_path / "cupl.json"
    cupl.write_text(json.dumps({"cat": ["a furry pet.", "whiskers"], "dog": "a loyal pet."}))
    assert resolve_templates(cupl) == {"cat": ["a furry pet.", "whiskers"], "dog": ["a loyal pet."]}
    with pytest.raises(FileNotFoundError, match="template file not found"):
        resolve_templates(str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        resolve_templates(bad)


def test_ensemble_is_renormalised_mean(make_model):
    model = make_model({
        "a cat.": [1, 0, 0], "the cat.": [0, 1, 0],
        "a dog.": [3, 0, 4], "the dog.": [0, 0, 2],  # normalised to [.6,0,.8] and [0,0,1]
    })
    w = ensemble_text_weights(model, ["cat", "dog"], ["a {c}.", "the {}."])
    # cat: mean([1,0,0],[0,1,0]) = [.5,.5,0] -> [1,1,0]/sqrt2 ; dog: mean = [.3,0,.9] -> [1,0,3]/sqrt10
    expected = np.array([[1, 1, 0], [1, 0, 3]]) / np.sqrt([[2], [10]])
    np.testing.assert_allclose(w, expected, atol=1e-6)
    assert w.dtype == np.float32 and w.shape == (2, 3)
    assert model.calls == [["a cat.", "the cat.", "a dog.", "the dog."]]  # one batched call


def test_class_specific_prompts(make_model):
    model = make_model({"furry.": [1, 0], "whiskers": [0, 1], "loyal.": [1, 1]})
    w = ensemble_text_weights(model, ["cat", "dog"], {"cat": ["furry.", "whiskers"], "dog": ["loyal."]})
    np.testing.assert_allclose(w, np.full((2, 2), 1 / np.sqrt(2)), atol=1e-6)
    with pytest.raises(ValueError, match="missing for 1 classes"):
        ensemble_text_weights(model, ["cat", "bird"], {"cat": ["furry."]})
