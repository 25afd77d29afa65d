"""Finding open_clip weights: a pretrained tag, an ``hf-hub:`` repo, or a local file.

Downloads go through ``huggingface_hub`` / open_clip with the cache and offline mode read at call
time; every failure becomes one line that names the file needed and how to pass a local path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlparse

from cliplab.errors import ModelLoadError, brief, how_to_pass
from cliplab.models import hub
from cliplab.models.weights import WEIGHT_SUFFIXES

HUB_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
HUB_CONFIG_FILE = "open_clip_config.json"
def local_hint(arch: str | None = None, cfg: dict | None = None) -> str:
    """How to pass the weights by path (as a flag or an argument, where it is read); names the
    ``-quickgelu`` architecture where the tag needs it."""
    weights = how_to_pass("pretrained", "/path/to/file.safetensors")
    if arch and cfg and cfg.get("quick_gelu") and not arch.endswith("-quickgelu"):
        import open_clip

        qg = f"{arch}-quickgelu"
        if open_clip.get_model_config(qg) is not None:
            return f"pass a local copy instead: {how_to_pass('spec', f'openclip:{qg}')} with {weights} (these weights need QuickGELU)"
        return f"pass a local copy instead: {weights} (these weights need QuickGELU)"
    return f"pass a local copy instead: {weights}"


def _missing(what: str, files: list[str], where: str, hint: str) -> ModelLoadError:
    names = " or ".join(files)
    return ModelLoadError(f"{what} needs {names} from {where}, which is not cached here and {hub.download_hint()}; {hint}")


def hub_file(repo: str, filenames: list[str] | tuple[str, ...], what: str, hint: str | None = None) -> str:
    """Path of the first of ``filenames`` the Hugging Face repo ``repo`` has (cache first)."""
    hint = hint or local_hint()
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError

    offline = hub.offline()
    where = f"the Hugging Face repo {repo!r} (HF cache {hub.cache_dir()})"
    for name in filenames:
        try:
            return hf_hub_download(repo, name, cache_dir=hub.cache_dir(), local_files_only=offline)
        except RemoteEntryNotFoundError:
            continue  # the repo exists but lacks this file: try the next name
        except LocalEntryNotFoundError:
            if offline:
                continue  # another name may be cached
            break  # no network: asking again for the next name only repeats the wait
        except Exception as exc:  # repository not found, auth, HTTP errors...
            raise ModelLoadError(f"{what}: cannot fetch {name} from {where}: {brief(exc)}; {hint}") from exc
    raise _missing(what, list(filenames), where, hint)


def tag_weights(arch: str, tag: str, cfg: dict) -> str:
    """Local path of the weights for an open_clip pretrained tag (``cfg`` from ``get_pretrained_cfg``)."""
    what = f"openclip:{arch} pretrained={tag!r}"
    hint = local_hint(arch, cfg)
    if cfg.get("file"):
        return cfg["file"]
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])  # "org/name/" means the default file names
        if filename:
            names = [filename]
            if filename.endswith((".bin", ".pth")):
                names.insert(0, filename[:-4] + ".safetensors")
        else:
            names = list(HUB_WEIGHT_FILES)
        return hub_file(repo, names, what, hint)
    if cfg.get("url"):
        return _url_weights(cfg["url"], what, hint)
    raise ModelLoadError(f"{what}: open_clip lists this tag without a download location; {hint}")


def _url_weights(url: str, what: str, hint: str) -> str:
    import open_clip

    cache = os.path.expanduser("~/.cache/clip")
    target = os.path.join(cache, os.path.basename(url))
    host = urlparse(url).hostname or ""
    if not os.path.isfile(target) and (hub.offline_by_setting() or not hub.reachable(host)):
        why = hub.download_hint() if hub.offline_by_setting() else f"{host} cannot be reached (no network)"
        raise ModelLoadError(f"{what} needs {os.path.basename(url)} from {url} (cache {cache}), and {why}; {hint}")
    try:
        return open_clip.download_pretrained_from_url(url, cache_dir=cache)
    except Exception as exc:
        raise ModelLoadError(f"{what}: cannot download {url}: {brief(exc)}; {hint}") from exc


def hub_repo(repo: str) -> tuple[dict, str]:
    """(open_clip config json, weights path) of an open_clip repo on the Hugging Face hub."""
    what = f"pretrained='hf-hub:{repo}'"
    config_path = hub_file(repo, [HUB_CONFIG_FILE], what)
    try:
        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{what}: cannot read {config_path}: {brief(exc)}") from exc
    if "model_cfg" not in config:
        raise ModelLoadError(f"{what}: {config_path} has no 'model_cfg' (not an open_clip repo?)")
    return config, hub_file(repo, HUB_WEIGHT_FILES, what)


def looks_like_path(value: str) -> bool:
    return value.lower().endswith(WEIGHT_SUFFIXES) or os.sep in value or value.startswith(("~", "."))
