"""Model folders: what cliplab writes loads by its path, and a folder that is not one says why."""

import json

import pytest
import torch
from safetensors.torch import save_file

from cliplab.errors import ModelLoadError
from cliplab.models import load_model, parse_spec
from cliplab.models.folder import MANIFEST, base_spec, write_manifest


@pytest.fixture
def folder(tmp_path):
    """A "clip" folder holding the bundled tiny model's weights with one tensor changed."""
    state = {k: v.clone().contiguous() for k, v in load_model("tiny").torch_module.state_dict().items()}
    state["logit_scale"] = torch.tensor(1.5)
    save_file(state, str(tmp_path / "model.safetensors"))
    write_manifest(tmp_path, kind="clip", base="tiny")
    return tmp_path


def test_a_folder_loads_by_its_path_with_its_weights(folder):
    model = load_model(str(folder))
    assert model.torch_module.logit_scale.item() == pytest.approx(1.5)
    assert model.name == str(folder.resolve())
    assert parse_spec(str(folder)).kind == "folder" and str(parse_spec(str(folder))) == str(folder.resolve())
    assert base_spec(folder) == "cliplab:shapes-tiny"
    assert model.identity != load_model("tiny").identity


@pytest.mark.parametrize(("damage", "message"), [
    (lambda f: (f / MANIFEST).unlink(), "holds no cliplab model"),
    (lambda f: (f / MANIFEST).write_text("{not json"), "cannot read the model folder's manifest"),
    (lambda f: (f / MANIFEST).write_text(json.dumps({"kind": "clip"})), "needs kind, base and weights"),
    (lambda f: (f / MANIFEST).write_text(json.dumps({"kind": "gan", "base": "tiny", "weights": "model.safetensors"})),
     "model kind 'gan', which this cliplab cannot load"),
    (lambda f: (f / "model.safetensors").unlink(), "has no weights file model.safetensors"),
])  # fmt: skip
def test_a_damaged_folder_is_refused_in_one_line(folder, damage, message):
    damage(folder)
    with pytest.raises(ModelLoadError, match=message) as caught:
        load_model(str(folder))
    assert "\n" not in str(caught.value)


def test_pretrained_is_refused_with_a_folder(folder):
    with pytest.raises(ModelLoadError, match="pretrained is not used with a model folder"):
        load_model(str(folder), pretrained=folder / "model.safetensors")


def test_the_command_line_takes_a_folder_as_model(cli, folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("classify") / "labels.csv"
    result = cli("classify", "--model", folder, "--images", "synthetic:4", "--classnames", "circle,square", "--out", out, "--no-cache")
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 5


def test_a_moved_folder_keeps_its_identity(folder, tmp_path_factory):
    import shutil

    moved = tmp_path_factory.mktemp("elsewhere") / "model"
    shutil.copytree(folder, moved)
    assert load_model(str(moved)).identity == load_model(str(folder)).identity
