"""One path to load a model and embed: every command that embeds takes the same embedding options,
every command that loads a model the same ``--precision``, whose default is ``load_model``'s."""

from __future__ import annotations

import inspect

import pytest
import typer

# Commands that embed a collection through ``cliplab.features.embed``.
EMBEDDING_COMMANDS = ["embed", "classify", "adapt", "inspect fit", "inspect score", "support build", "caption", "caption train", *(f"eval {task}" for task in (
    "zeroshot_classification", "zeroshot_retrieval", "robustness", "calibration", "ood", "fairness", "diagnostics", "generation", "captioning"))]
# Commands that load a model without embedding a collection (one image, queries, captions, scenes).
MODEL_COMMANDS = ["segment", "search", "serve", "dedup", "demo", "eval skills", "eval mmvp", "eval segmentation", "un2clip"]
EMBEDDING_OPTIONS = ["--model", "--pretrained", "--precision", "--decode", "--cache-dir", "--no-cache",
                     "--batch-size", "--workers", "--progress"]  # fmt: skip


def command(app, name: str):
    """The click command typer registered as ``cliplab NAME`` (``NAME`` may name a group's sub-command: "eval ood")."""
    found = typer.main.get_command(app)
    for part in name.split():
        found = found.get_command(None, part)
        assert found is not None, f"no command {name}"
    return found


def option(cmd, flag: str):
    return next((p for p in cmd.params if p.param_type_name == "option" and flag in p.opts), None)


def described(param) -> tuple:
    """What a user sees of an option: its flags, type (an enum: its choices), default and help."""
    default = getattr(param.default, "value", param.default)
    return tuple(param.opts), tuple(param.secondary_opts), param.type_descriptor.annotation, default, param.help


def choices(param) -> set[str]:
    return {member.value for member in param.type_descriptor.annotation}


@pytest.mark.parametrize("name", EMBEDDING_COMMANDS)
def test_every_embedding_command_takes_the_same_embedding_options(app, name):
    reference, cmd = command(app, "embed"), command(app, name)
    for flag in EMBEDDING_OPTIONS:
        param = option(cmd, flag)
        assert param is not None, f"cliplab {name} lacks {flag}"
        assert described(param) == described(option(reference, flag)), f"cliplab {name} {flag} differs from cliplab embed's"


@pytest.mark.parametrize("name", EMBEDDING_COMMANDS + MODEL_COMMANDS)
def test_every_command_that_loads_a_model_takes_the_same_precision_as_load_model(app, name):
    from cliplab.models import load_model

    param = option(command(app, name), "--precision")
    assert param is not None, f"cliplab {name} lacks --precision"
    assert described(param) == described(option(command(app, "embed"), "--precision"))
    assert choices(param) == {"auto", "fp32", "bf16", "fp16", "int8"}
    assert getattr(param.default, "value", param.default) == inspect.signature(load_model).parameters["precision"].default


def test_the_options_give_the_model_and_embed_arguments_and_cache_by_default(tiny_model_files, tmp_path):
    from cliplab.cli.common import EmbeddingOptions, Precision
    from cliplab.features.cache_folder import default_cache_dir

    options = EmbeddingOptions(tiny_model_files["spec"], str(tiny_model_files["weights"]), Precision("fp32"), progress=False)
    clip, kwargs = options.prepare()
    assert clip.precision == "fp32"
    assert kwargs == {"cache_dir": default_cache_dir(), "batch_size": None, "num_workers": None, "progress": False, "decode": "auto"}
    assert EmbeddingOptions(cache_dir=tmp_path).embed_kwargs()["cache_dir"] == tmp_path
    assert EmbeddingOptions(no_cache=True).embed_kwargs()["cache_dir"] is None


def test_contradicting_cache_flags_fail_before_the_model_loads():
    from cliplab.cli.common import EmbeddingOptions
    from cliplab.errors import InputError

    options = EmbeddingOptions(model="openclip:no-such-architecture", cache_dir="c", no_cache=True)
    with pytest.raises(InputError, match="--no-cache and --cache-dir"):
        options.prepare()


def test_adapt_passes_decode_to_embed(cli, tmp_path, monkeypatch, model_args):
    """``adapt`` used to have no ``--decode``; the value given reaches ``embed``."""
    from PIL import Image

    import cliplab.features

    for n, cls in enumerate(["a", "a", "b", "b"]):
        (tmp_path / "train" / cls).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (60 * n, 0, 0)).save(tmp_path / "train" / cls / f"{n}.png")
    seen = {}

    def fake_embed(model, source, **kwargs):
        seen.update(kwargs)
        raise cliplab.errors.InputError("stop here")

    monkeypatch.setattr(cliplab.features, "embed", fake_embed)
    result = cli("adapt", *model_args, "--train", tmp_path / "train", "--out", tmp_path / "o", "--decode", "cpu", "--no-progress")
    assert result.exit_code == 2 and "stop here" in result.stderr, result.output
    assert seen["decode"] == "cpu" and seen["cache_dir"] is not None


@pytest.mark.parametrize("name", MODEL_COMMANDS)
def test_commands_that_do_not_embed_a_collection_offer_no_feature_store_options(app, name):
    """An option that would do nothing is not offered: these commands never go through the feature store."""
    cmd = command(app, name)
    assert [flag for flag in ("--decode", "--cache-dir", "--no-cache", "--workers") if option(cmd, flag)] == []
