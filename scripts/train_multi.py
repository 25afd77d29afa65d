"""Train the bundled model ``cliplab:shapes-multi``: shapes-tiny's image tower with a multilingual text tower.

    python scripts/train_multi.py                 # full recipe, in runs/shapes-multi/
    python scripts/train_multi.py --distill-steps 20 --align-steps 4 --out /tmp/multi   # smoke run
    python scripts/train_multi.py --ship          # full recipe, then replace the shipped files

The cheap path of DC-CLIP's second stage (Zhang et al. 2024) and Multilingual-CLIP (Carlsson et al.
2022), on the languages of ``cliplab.data.synthetic.LANGUAGES``:

0. a BPE tokenizer learnt on the captions and prompts of every language
   (``cliplab.models.text_tokenizer``; the CLIP BPE would truncate most Chinese, Japanese and
   Arabic captions at the 48-token context);
1. text-tower distillation: a new text tower (4 layers, width 128, the new tokenizer) learns to map
   a caption in any language (a language drawn per caption per step: RS-M-CLIP's translation
   augmentation) to shapes-tiny's text embedding of the English parallel (``textdistill``, cosine).
   Text only: no image is drawn, so this stage is cheap. The image tower and the logit scale are
   shapes-tiny's, copied and frozen: the student lands in the teacher's joint space;
2. contrastive alignment with the images (``clip,textdistill``) on twin-scene batches with
   translated captions, through ``cliplab.train`` (the image tower stays frozen).

Seeded: stage 1's batch b is drawn from (seed, b); stage 2 is the trainer's (resumable). Stage 1
writes ``stage1.safetensors`` and a rerun skips it. ``--ship`` writes the fp16 weights, the
tokenizer and the config into ``src/cliplab/models/bundled/shapes-multi/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from cliplab.data import synthetic
from cliplab.files import atomic_target, write_json
from cliplab.models import load_model
from cliplab.models.bundled import BUNDLED
from cliplab.models.openclip_backend import OpenClipModel
from cliplab.train.modes import train_learning_parts
from cliplab.models.text_tokenizer import TextTokenizer, synthetic_corpus, token_lengths, train_tokenizer
from cliplab.train import TrainConfig, train
from cliplab.train.checkpoint import latest
from cliplab.train.objectives.text_distill import text_distill_loss
from cliplab.train.scene_batches import TwinSceneBatches
from cliplab.train.schedule import cosine_with_warmup
from cliplab.train.trainer import decay_groups

REPO = Path(__file__).resolve().parents[1]
MULTI, TINY = BUNDLED["shapes-multi"], BUNDLED["shapes-tiny"]
# Stage 1's caption kinds: the captions and prompts the evaluation uses, and paraphrases for variety.
KINDS = {"full": 0.4, "short": 0.25, "paraphrase": 0.15, "prompt": 0.2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--distill-steps", type=int, default=1000)
    p.add_argument("--align-steps", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--align-lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--vocab", type=int, default=2000, help="tokenizer vocabulary (BPE tokens of at most 8 characters)")
    p.add_argument("--corpus-scenes", type=int, default=3000, help="train scenes whose captions the tokenizer is learnt on")
    p.add_argument("--languages", default=",".join(synthetic.LANGUAGES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core machine)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "shapes-multi", help="run folder")
    p.add_argument("--ship", action="store_true", help="write weights, tokenizer and config into src/cliplab/models/bundled/shapes-multi/")
    return p.parse_args(argv)


def model_config(tokenizer: TextTokenizer) -> dict:
    """shapes-tiny's config with a text tower sized for ``tokenizer``."""
    cfg = json.loads(TINY.config.read_text())
    cfg["model_cfg"]["text_cfg"].update(vocab_size=tokenizer.vocab_size, context_length=tokenizer.context_length)
    cfg["tokenizer"] = "tokenizer.json"
    return cfg


def encode_text_trimmed(clip: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``clip.encode_text`` on the tokens up to the longest text of the batch: with a causal mask the
    padding after a text's ``<eot>`` never reaches it, so this equals the full pass, in less time."""
    n = int((tokens != 0).sum(1).max())
    x = clip.token_embedding(tokens[:, :n]) + clip.positional_embedding[:n]
    x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask[:n, :n]))
    x = x[torch.arange(len(tokens)), tokens[:, :n].argmax(-1)]
    return x @ clip.text_projection


def distill_batch(index: int, args: argparse.Namespace, languages: tuple[str, ...], prompts: dict) -> tuple[list[str], list[str]]:
    """Stage 1's batch ``index``: (captions in drawn languages, their English parallels)."""
    rng = np.random.default_rng([args.seed, index])
    kinds, weights = list(KINDS), np.array(list(KINDS.values()))
    student, teacher = [], []
    for _ in range(args.batch_size):
        spec = synthetic.sample_spec(rng, "train", 2)
        language = languages[rng.integers(len(languages))]
        kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
        if kind == "prompt":
            attribute = synthetic.ATTRIBUTES[rng.integers(len(synthetic.ATTRIBUTES))]
            obj = spec.objects[0]
            value = spec.background if attribute == "background" else getattr(obj, attribute)
            texts = {lang: prompts[(attribute, lang)][value][0] for lang in (language, "en")}
        elif kind == "paraphrase":
            texts = synthetic.parallel_paraphrases(spec, rng, tuple(dict.fromkeys((language, "en"))))
        else:
            texts = {lang: synthetic.caption(spec, kind, lang) for lang in (language, "en")}
        student.append(texts[language])
        teacher.append(texts["en"])
    return student, teacher


def stage1(student: OpenClipModel, teacher: OpenClipModel, args: argparse.Namespace, languages: tuple[str, ...]) -> dict:
    """Text-tower distillation; the loss every 50 steps and the time taken."""
    module, teacher_module = train_learning_parts(student.torch_module), teacher.torch_module.eval()
    groups = decay_groups(module, 0.1)
    optimizer = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_with_warmup(s, args.distill_steps, args.warmup))
    prompts = {(a, lang): synthetic.attribute_prompts(a, lang) for a in synthetic.ATTRIBUTES for lang in {*languages, "en"}}
    log, t0, c0, running = [], time.time(), time.process_time(), []
    for step in range(args.distill_steps):
        texts, english = distill_batch(step, args, languages, prompts)
        with torch.no_grad():
            target = encode_text_trimmed(teacher_module, teacher.tokenize(english))
        loss = text_distill_loss(encode_text_trimmed(module, student.tokenize(texts)), target, "cosine")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        optimizer.step()
        schedule.step()
        running.append(float(loss.detach()))
        if (step + 1) % 50 == 0 or step + 1 == args.distill_steps:
            log.append({"step": step + 1, "loss": round(float(np.mean(running)), 4)})
            running = []
            print(f"stage 1 step {step + 1}: cosine distance {log[-1]['loss']:.4f} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    return {"steps": log, "wall_s": round(time.time() - t0, 1), "cpu_s": round(time.process_time() - c0, 1)}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    languages = tuple(c.strip() for c in args.languages.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    t_all, c_all = time.time(), time.process_time()
    tok_path = args.out / "tokenizer.json"
    if tok_path.is_file():
        tokenizer = TextTokenizer.load(tok_path)
    else:
        tokenizer = train_tokenizer(synthetic_corpus(args.corpus_scenes, seed=args.seed), vocab_size=args.vocab)
        lengths = token_lengths(lambda xs: [len(tokenizer.encode(x)) for x in xs], n_scenes=500, seed=args.seed + 1, context_length=48)
        worst = max(lengths, key=lambda lang: lengths[lang]["max"])
        if lengths[worst]["max"] > tokenizer.context_length:  # a truncated caption loses what its end says
            raise SystemExit(f"the tokenizer gives {worst} captions of up to {lengths[worst]['max']} tokens, over the context of {tokenizer.context_length}")
        tokenizer.save(tok_path)
    cfg = model_config(tokenizer)
    write_json(cfg, args.out / "config.json")
    teacher = load_model("cliplab:shapes-tiny", device="cpu")
    torch.manual_seed(args.seed)
    student = OpenClipModel.from_config("cliplab:shapes-multi", cfg["model_cfg"], cfg["preprocess_cfg"], None, device="cpu", tokenizer=tokenizer)
    module = student.torch_module
    with torch.no_grad():  # shapes-tiny's image tower and temperature, frozen: the text tower learns into its space
        module.visual.load_state_dict(teacher.torch_module.visual.state_dict())
        module.logit_scale.copy_(teacher.torch_module.logit_scale)
    module.visual.requires_grad_(False)
    module.logit_scale.requires_grad_(False)

    stage1_file = args.out / "stage1.safetensors"
    if stage1_file.is_file():
        module.load_state_dict(load_file(str(stage1_file)))
        report1 = json.loads((args.out / "stage1.json").read_text())
    else:
        report1 = stage1(student, teacher, args, languages)
        with atomic_target(stage1_file) as tmp:
            save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp))
        write_json(report1, args.out / "stage1.json")

    align_dir = args.out / "align"
    config = TrainConfig(
        model="cliplab:shapes-multi", data="synthetic twin scenes, translated captions", objectives="clip,textdistill",
        steps=args.align_steps, batch_size=args.batch_size, lr=args.align_lr, warmup=max(1, args.align_steps // 10), weight_decay=0.1,
        grad_clip=1.0, seed=args.seed, out=str(align_dir), ckpt_every=50, eval_every=0, eval_n=0, evaluate="none", log_every=10,
        workers=0, device="cpu", teacher="cliplab:shapes-tiny", languages=",".join(languages), progress=False,
    )  # fmt: skip
    batches = lambda start: TwinSceneBatches(student.preprocess, student.tokenize, args.batch_size, seed=args.seed + 1, start=start,
                                             languages=languages)  # fmt: skip
    t2 = time.time()
    result = train(config, model=student, resume=latest(align_dir) is not None, batches=batches)
    wall2 = time.time() - t2

    trained = load_file(str(align_dir / "model.safetensors"))  # the frozen image tower is shapes-tiny's, statistics included
    weights = {k: v.to(torch.float16).contiguous() for k, v in trained.items()}
    target = MULTI.weights if args.ship else args.out / "model-fp16.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(target) as tmp:
        save_file(weights, str(tmp), metadata={"format": "pt", "seed": str(args.seed)})
    if args.ship:
        shutil.copyfile(tok_path, MULTI.config.parent / "tokenizer.json")
        write_json(cfg, MULTI.config)
    lines = [json.loads(x) for x in (align_dir / "metrics.jsonl").read_text().splitlines()]
    # times summed over the calls that trained or resumed the run (a rerun with --ship after a run trains nothing)
    earlier = json.loads((args.out / "training_log.json").read_text()) if (args.out / "training_log.json").is_file() else {}
    before = earlier.get("all_calls", {"wall_s": 0.0, "cpu_s": 0.0})
    log = {"args": {k: str(v) for k, v in vars(args).items()}, "tokenizer_vocab": tokenizer.vocab_size, "stage1": report1,
           "stage2": {"steps": [{k: round(v, 4) for k, v in r.items() if k == "step" or k == "loss" or k.startswith("loss/")} for r in lines if "loss" in r],
                      "wall_s": round(wall2 + earlier.get("stage2", {}).get("wall_s", 0.0), 1)},
           "all_calls": {"wall_s": round(before["wall_s"] + time.time() - t_all, 1), "cpu_s": round(before["cpu_s"] + time.process_time() - c_all, 1)}}  # fmt: skip
    write_json(log, args.out / "training_log.json")
    if args.ship:
        write_json(log, MULTI.config.parent / "training_log.json")
    print(f"saved {target} ({target.stat().st_size / 1e6:.1f} MB); all calls {log['all_calls']}", file=sys.stderr)


if __name__ == "__main__":
    main()
