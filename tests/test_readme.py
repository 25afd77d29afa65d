"""Every code block of README.md runs as a test, read from the README itself (so a changed command is
tested as written). Python blocks are exec'd; bash blocks run line by line through the ``cliplab`` app
in this process, in a folder holding made-up data under the README's own names (``photos/``,
``parts/``, ``pairs.jsonl``, ...), with the sizes shrunk (``SHRINK``) and ``[optional]`` parts dropped.

Block -> how it runs (``HOW``; a block missing from it fails ``test_every_block_has_a_way_to_run``):

| block | how it runs |
|---|---|
| Set-up: two commands #1 | ``pip install`` skipped (the package is installed); ``cliplab demo`` runs with ``--n 10`` |
| Set-up: two commands #2 | not run: ``python -m pytest`` (and ``-m slow``, its slow tier) is this suite itself |
| Ten lines of Python #1 | exec'd on ``scenes/images`` made by ``cliplab data synth`` (24 scenes) |
| Few-shot adaptation #1 | run on ``parts/`` and ``new_parts/``: synthetic shape folders, shots ``1,2``, seed ``1``, methods ``zeroshot,gda,tip`` |
| Inspect (one-class) #1 | run on ``good_parts/`` (24 one-object scenes, no subfolders) and ``line/`` (``good/``: 6 other scenes, ``noise/``: 6 noise images) |
| Support sets without labels #1 | run on ``photos/`` (the pool) and ``new_parts/`` (the test folder): synthetic shape folders |
| Label-free adaptation #1 | run on ``photos/`` (its shape subfolders only score the stages), ``[--descriptors ...]`` dropped |
| Non-transferable prompts (IP-CLIP) #1 | exec'd as written (the bundled shapes-vit, 16 drawn images, 2 epochs) |
| Non-transferable prompts (IP-CLIP) #2 | run on ``plain_parts/``, ``striped_parts/``, ``dotted_parts/``: 8 shape folders' scenes each with the background forced, 1 epoch |
| Multi-level features #1 | exec'd as written (the bundled shapes-vit, 60 synthetic scenes) |
| un²CLIP #1 | ``synthetic:16``, 2 decoder steps and 2 tower steps; ``eval mmvp`` on 4 pairs per kind |
| Segmentation #1 | exec'd with ``model`` the bundled shapes-tiny and ``street.jpg`` a synthetic scene |
| Search a collection #1 | run on ``photos/`` (synthetic shape folders), ``more_feats/`` embedded beforehand, ``q.png``; ``serve`` in-process: its app answers ``/?q=`` and ``POST /search`` through a test client instead of listening |
| Multilingual #1 | exec'd as written (the bundled shapes-multi, 40 synthetic scenes) |
| Mixture of experts (CLIP-MoE) #1 | ``synthetic:120``, 1 step per stage and of the router, batch 8; then ``classify`` on the folder it wrote |
| Captioning #1 | exec'd as written (the bundled captioner, 3 synthetic scenes) |
| Captioning #2 | ``synthetic:16``; ``caption train`` with 2 steps |
| Captioning #3 | ``synthetic:16``; two 6-layer teachers and a student distilled from them, 2 steps each |
| Train and post-train #1 | ``synthetic:16``, 2 steps, batch 8, ``--eval-n 0``; ``torchrun --nproc-per-node 2`` as its single-process equivalent (``cliplab train``) on the tiny test architecture; ``curate`` on a made-up ``pairs.jsonl`` and ``entries.txt`` |
| Layout #1 | not run: a file tree, not code |
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"

HOW = {
    "Set-up: two commands #1": "run",
    "Set-up: two commands #2": "not run: python -m pytest (and -m slow) is this suite itself",
    "Ten lines of Python #1": "exec",
    "Few-shot adaptation #1": "run",
    "Inspect (one-class) #1": "run",
    "Support sets without labels #1": "run",
    "Label-free adaptation #1": "run",
    "Non-transferable prompts (IP-CLIP) #1": "exec",
    "Non-transferable prompts (IP-CLIP) #2": "run",
    "Multi-level features #1": "exec",
    "un²CLIP #1": "run",
    "Segmentation #1": "exec",
    "Search a collection #1": "run",
    "Train and post-train #1": "run",
    "Region-aware training #1": "run",
    "Multilingual #1": "exec",
    "Mixture of experts (CLIP-MoE) #1": "run",
    "Captioning #1": "exec",
    "Captioning #2": "run",
    "Captioning #3": "run",
    "Layout #1": "not run: a file tree",
}

# (pattern, replacement) applied to each command line: the README's sizes, shrunk to test sizes
SHRINK = [
    (r"^pip install [^&]*&&\s*", ""),  # the package is installed already
    (r"^torchrun --nproc-per-node \d+ -m cliplab ", "cliplab "),  # one process: torchrun's single-process equivalent
    (r"^(cliplab demo)\b", r"\1 --n 10"),
    (r"synthetic:\d+", "synthetic:16"),
    (r"--steps \d+", "--steps 2"),
    (r"^(cliplab train)\b(?!.*--steps)", r"\1 --steps 2 --batch-size 8"),
    (r"^(cliplab train)\b", r"\1 --eval-n 0"),  # no evaluation on synthetic scenes after 2 steps
    (r"^(cliplab adapt)\b(?!.*--methods)", r"\1 --methods zeroshot,gda,tip"),  # the fast heads only
    (r"^(cliplab moe upcycle .*)synthetic:16", r"\1synthetic:120 --stage-steps 1 --router-steps 1 --batch-size 8 --clusters 2"),
    (r"--batch-size \d+", "--batch-size 8"),
    (r"^(cliplab adapt --methods ipclip .*)--epochs \d+", r"\1--epochs 1"),
    (r"--shots [\d,]+", "--shots 1,2"),
    (r"--seeds [\d,]+", "--seeds 1"),
    (r"^(cliplab un2clip)\b", r"\1 --decoder-steps 2 --steps 2 --batch-size 8"),
    (r"^(cliplab eval mmvp)\b", r"\1 --pairs 4"),
    (r"openclip:ViT-B-32\b", "openclip:cliplab-test-tiny"),  # conftest's tiny architecture, random weights
]


def blocks() -> list[tuple[str, str, str]]:
    """(id, language, code) of every fenced block; id = its section heading and number within it."""
    out, section, counts = [], "", {}
    for match in re.finditer(r"^## ([^\n]+)$|^```(\w*)\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S):
        if match.group(1):
            section = match.group(1).strip()
            continue
        counts[section] = counts.get(section, 0) + 1
        out.append((f"{section} #{counts[section]}", match.group(2), match.group(3)))
    return out


def commands(code: str) -> list[list[str]]:
    """The block's command lines as argv lists: comments and ``[optional]`` parts dropped, sizes shrunk."""
    out = []
    for line in code.splitlines():
        line = re.sub(r"\s+\[[^\]]*\]", "", line.strip())
        for pattern, repl in SHRINK:
            line = re.sub(pattern, repl, line)
        argv = shlex.split(line, comments=True)
        if argv:
            out.append(argv)
    return out


def test_every_block_has_a_way_to_run():
    found = {block_id: lang for block_id, lang, _ in blocks()}
    assert set(found) == set(HOW), "add the new or renamed README block to HOW (and the table above)"
    assert all(HOW[b] == "exec" for b, lang in found.items() if lang == "python")


def images_by_shape(folder: Path, n: int, seed: int) -> Path:
    """``folder``/<shape>/*.png: ``n`` single-object synthetic scenes, one subfolder per shape."""
    from cliplab.cli.data import write_scenes

    write_scenes(folder.with_name(folder.name + "-scenes"), n, seed, "test", 64, 1, "shape", False, progress=False)
    folder.with_name(folder.name + "-scenes").joinpath("images").rename(folder)
    return folder


def redraw_on(path: Path, background: str, seed: int) -> None:
    """Replace the scene at ``path`` by one of the same shape on ``background``."""
    import dataclasses

    from cliplab.data import synthetic

    spec = synthetic.sample_spec(np.random.default_rng(seed), max_objects=1)
    obj = dataclasses.replace(spec.objects[0], shape=path.parent.name)
    synthetic.render(dataclasses.replace(spec, background=background, objects=(obj,))).image.save(path)


def made_up_data(cwd: Path, cli) -> None:
    """Every input the README's bash blocks name, at the name they use."""
    from cliplab.cli.data import write_scenes

    images_by_shape(cwd / "parts", 160, 1)
    for i, background in enumerate(("plain", "striped", "dotted")):
        images_by_shape(cwd / f"{background}_parts", 16, 10)  # the same classes in each; every scene redrawn on one background
        for j, path in enumerate(sorted((cwd / f"{background}_parts").rglob("*.png"))):
            redraw_on(path, background, 100 * i + j)
    images_by_shape(cwd / "new_parts", 8, 2)
    images_by_shape(cwd / "photos", 24, 3)
    more = images_by_shape(cwd / "more_photos", 8, 4)
    assert cli("embed", "--images", more, "--out", cwd / "more_feats", "--no-progress").exit_code == 0
    Image.open(next((cwd / "photos").rglob("*.png"))).save(cwd / "q.png")
    write_scenes(cwd / "good-scenes", 30, 5, "test", 64, 1, None, False, progress=False)
    (cwd / "good-scenes" / "images").rename(cwd / "good_parts")
    (cwd / "line" / "noise").mkdir(parents=True)
    for path in sorted((cwd / "good_parts").glob("*.png"))[24:]:
        (cwd / "line" / "good").mkdir(exist_ok=True)
        path.rename(cwd / "line" / "good" / path.name)
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(cwd / "line" / "noise" / f"{i}.png")
    pairs = cwd / "pairs.jsonl"
    rows = [{"image": str(p.relative_to(cwd)), "caption": f"a photo of a {p.parent.name}"} for p in sorted((cwd / "photos").rglob("*.png"))]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    boxed = [{**r, "regions": [{"box": [16, 16, 48, 48], "phrase": r["caption"]}]} for r in rows]
    (cwd / "regions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in boxed))
    (cwd / "entries.txt").write_text("".join(f"{s}\n" for s in sorted({r["caption"].split()[-1] for r in rows})))


def serve_in_process(monkeypatch, answers: list) -> None:
    """``cliplab serve`` hands its app to ``uvicorn.Server(config).run()``: ask it the README's page query and a
    search instead of listening."""
    import uvicorn
    from fastapi.testclient import TestClient

    def run(server):
        with TestClient(server.config.app) as client:
            answers.append(client.get("/", params={"q": "a red star"}))
            answers.append(client.post("/search", json={"text": "a red star", "k": 3}))

    monkeypatch.setattr(uvicorn.Server, "run", run)


BASH = [b for b, lang, _ in blocks() if lang == "bash" and HOW.get(b) == "run"]


@pytest.fixture(scope="module")
def readme_data(tmp_path_factory, cli) -> Path:
    """The made-up inputs, written once; each block runs on its own copy."""
    folder = tmp_path_factory.mktemp("readme-data")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))  # as private_cache_home does per test
        made_up_data(folder, cli)
    return folder


@pytest.mark.parametrize("block_id", BASH)
def test_readme_bash_block_runs(block_id, cli, tiny_model_files, readme_data, tmp_path, monkeypatch):
    code = next(c for b, _, c in blocks() if b == block_id)
    shutil.copytree(readme_data, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    answers: list = []
    serve_in_process(monkeypatch, answers)
    for argv in commands(code):
        assert argv[0] == "cliplab", f"{block_id}: {shlex.join(argv)} is not a cliplab command; say in HOW how it runs"
        result = cli(*argv[1:])
        assert result.exit_code == 0, f"{shlex.join(argv)}\n{result.output}"
    served = any(argv[1] == "serve" for argv in commands(code))
    assert len(answers) == (2 if served else 0) and all(r.status_code == 200 for r in answers), [r.text[:200] for r in answers]


def test_readme_python_example_runs(tmp_path, monkeypatch):
    from cliplab.cli.data import write_scenes

    code = next(c for b, _, c in blocks() if b == "Ten lines of Python #1")
    monkeypatch.chdir(tmp_path)
    write_scenes(tmp_path / "scenes", 24, 0, "test", 64, 1, "shape", False, progress=False)
    printed = []
    exec(compile(code, "README.md", "exec"), {"print": lambda *a: printed.append(a)})
    assert len(printed) == 2 and 0.0 <= printed[0][0] <= 1.0  # the accuracy, then the metrics
    assert "acc1" in printed[1][0]


def test_readme_multilevel_example_runs(tmp_path, monkeypatch):
    code = next(c for b, _, c in blocks() if b == "Multi-level features #1")
    monkeypatch.chdir(tmp_path)
    printed = []
    exec(compile(code, "README.md", "exec"), {"print": lambda *a: printed.append(a)})
    assert len(printed) == 1 and 0.0 <= printed[0][0] <= 1.0


def test_readme_captioning_example_runs(tmp_path, monkeypatch):
    from cliplab.data.synthetic import SHAPES

    code = next(c for b, _, c in blocks() if b == "Captioning #1")
    monkeypatch.chdir(tmp_path)
    printed = []
    exec(compile(code, "README.md", "exec"), {"print": lambda *a: printed.append(a)})
    assert len(printed) == 3 and all(any(shape in p[0] for shape in SHAPES) for p in printed), printed


def test_readme_nontransferable_example_runs(tmp_path, monkeypatch):
    code = next(c for b, _, c in blocks() if b == "Non-transferable prompts (IP-CLIP) #1")
    monkeypatch.chdir(tmp_path)
    printed = []
    namespace = {"print": lambda *a: printed.append(a)}
    exec(compile(code, "README.md", "exec"), namespace)
    assert len(printed) == 1 and all(0.0 <= a <= 1.0 for a in printed[0][:2]) and printed[0][2] > 0
    head, again, plain = namespace["head"], namespace["again"], namespace["plain"]
    np.testing.assert_array_equal(again.class_scores(plain), head.class_scores(plain))


def test_readme_segmentation_example_runs(tmp_path, monkeypatch):
    import cliplab
    from cliplab.data import synthetic

    code = next(c for b, _, c in blocks() if b == "Segmentation #1")
    monkeypatch.chdir(tmp_path)
    synthetic.scene(0, seed=0, split="test", max_objects=3).image.resize((256, 256)).save("street.jpg")
    namespace = {"cliplab": cliplab, "model": cliplab.load_model()}
    exec(compile(code, "README.md", "exec"), namespace)
    seg = namespace["seg"]
    assert seg.classes == ["background", "sky", "road", "car"]
    assert seg.labels.shape == (256, 256) and seg.probs.shape == (4, 256, 256)
    assert np.allclose(seg.probs.sum(0), 1, atol=1e-4)


def test_readme_multilingual_example_runs(tmp_path, monkeypatch):
    from cliplab.data import synthetic

    code = next(c for b, _, c in blocks() if b == "Multilingual #1")
    monkeypatch.chdir(tmp_path)
    printed = []
    namespace = {"print": lambda *a: printed.append(a)}
    exec(compile(code, "README.md", "exec"), namespace)
    caption, predicted = printed[0]
    assert "red crescent" in caption and len(predicted) == 3 and set(predicted) <= set(synthetic.SHAPES)
