"""Multilingual CLIP (issue #26): the bundled ``cliplab:shapes-multi`` in every caption language,
against the English-only ``cliplab:shapes-tiny``.

    PYTHONPATH=src python benchmarks/multilingual.py [--model cliplab:shapes-multi] [--n 1000] [--json FILE]

Hidden test scenes (split ``test``, seed 2026, as shapes-tiny's card; training never draws them):
``--n`` scenes of 1-2 objects with their full caption in each language for retrieval, and ``--n``
single-object scenes for zero-shot shape classification with that language's prompts
(``synthetic.attribute_prompts("shape", language)``). Per language:

* ``t2i_R@1`` / ``i2t_R@1``: text->image and image->text recall@1 (CLIP_benchmark definitions);
  ``ratio_vs_en``: ``t2i_R@1`` over English's (target >= 0.90);
* ``zeroshot_shape``: accuracy over 8 shapes (target >= 0.90);
* ``crosslingual_R@1``: the caption finds the English caption of its scene among the English
  captions of all scenes (target >= 0.80);
* ``baseline_t2i_R@1``, ``baseline_zeroshot_shape``: the same for ``--baseline`` (shapes-tiny,
  English-only text tower with the CLIP BPE).

And English ``t2i_R@1`` against the baseline's (target: within 2 points), the tokens per full
caption per language with each model's tokenizer, and whether every target is met.
"""

from __future__ import annotations

import argparse
import time

from _machine import add_json_option, print_machine, write_json

TARGETS = {"ratio_vs_en": 0.90, "zeroshot_shape": 0.90, "crosslingual_R@1": 0.80, "english_gap_points": 2.0}


def measure(model, retrieval, singles, languages) -> dict[str, dict[str, float]]:
    """Per language: retrieval both ways, zero-shot shape, cross-lingual text->text R@1."""
    import numpy as np

    from cliplab.data import synthetic
    from cliplab.evaluate.runner import crosslingual_metrics
    from cliplab.evaluate.scenes import caption_retrieval
    from cliplab.zeroshot import ZeroShotClassifier

    image = model.encode_images([r.image for r in retrieval])
    single = model.encode_images([r.image for r in singles])
    y = np.array([synthetic.SHAPES.index(r.objects[0]["shape"]) for r in singles])
    english = [synthetic.full_caption(r.spec, "en") for r in retrieval]
    rows = {}
    for lang in languages:
        texts = [synthetic.full_caption(r.spec, lang) for r in retrieval]
        emb = model.encode_texts(texts)
        found = caption_retrieval(image, emb, ks=(1,))
        clf = ZeroShotClassifier(model, list(synthetic.SHAPES), templates=synthetic.attribute_prompts("shape", lang)).fit()
        row = {"t2i_R@1": found["image_retrieval_recall@1"], "i2t_R@1": found["text_retrieval_recall@1"],
               "zeroshot_shape": float((clf.class_scores(single).argmax(1) == y).mean())}  # fmt: skip
        if lang != "en":
            row["crosslingual_R@1"] = crosslingual_metrics(model, texts, english, ks=(1,), text_emb=emb)["crosslingual_recall@1"]
        rows[lang] = row
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="cliplab:shapes-multi")
    p.add_argument("--pretrained", default=None, help="weights file for --model (e.g. a run's stage-1 weights); default the shipped ones")
    p.add_argument("--baseline", default="cliplab:shapes-tiny")
    p.add_argument("--n", type=int, default=1000, help="scenes for retrieval, and single-object scenes for zero-shot")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--languages", default=None, help="comma list (default: every language)")
    add_json_option(p)
    args = p.parse_args()
    machine = print_machine()

    from cliplab.data import synthetic
    from cliplab.evaluate.scenes import retrieval_scenes, single_object_scenes
    from cliplab.models import load_model
    from cliplab.models.text_tokenizer import token_lengths

    t0 = time.perf_counter()
    languages = args.languages.split(",") if args.languages else list(synthetic.LANGUAGES)
    retrieval, singles = retrieval_scenes(args.n, args.seed), single_object_scenes(args.n, args.seed)
    model, baseline = load_model(args.model, pretrained=args.pretrained, device="cpu"), load_model(args.baseline, device="cpu")
    ours, base = measure(model, retrieval, singles, languages), measure(baseline, retrieval, singles, languages)
    en = ours["en"]["t2i_R@1"]
    table = {}
    for lang in languages:
        row = {**ours[lang], "ratio_vs_en": ours[lang]["t2i_R@1"] / en if en else float("nan"),
               "baseline_t2i_R@1": base[lang]["t2i_R@1"], "baseline_zeroshot_shape": base[lang]["zeroshot_shape"]}  # fmt: skip
        table[lang] = row
        shown = "  ".join(f"{k} {v:.4f}" for k, v in row.items())
        print(f"{lang}: {shown}", flush=True)
    gap = 100 * (base["en"]["t2i_R@1"] - en) if "en" in base else float("nan")
    others = [row for lang, row in table.items() if lang != "en"]
    met = {
        "ratio_vs_en": all(r["ratio_vs_en"] >= TARGETS["ratio_vs_en"] for r in table.values()),
        "zeroshot_shape": all(r["zeroshot_shape"] >= TARGETS["zeroshot_shape"] for r in table.values()),
        "crosslingual_R@1": all(r["crosslingual_R@1"] >= TARGETS["crosslingual_R@1"] for r in others),
        "english_gap_points": gap <= TARGETS["english_gap_points"],
    }
    count = lambda m: (lambda xs: m.token_counts(xs))  # noqa: E731
    tokens = {}
    for name, m in (("model", model), ("baseline", baseline)):
        for lang, row in token_lengths(count(m), n_scenes=200, languages=languages, context_length=m.context_length).items():
            tokens.setdefault(lang, {}).update({f"{name}_mean": row["mean"], f"{name}_max": row["max"], f"{name}_truncated": row["truncated"]})
    figures = {
        "model": args.model + (f" ({args.pretrained})" if args.pretrained else ""), "baseline": args.baseline, "n": args.n,
        "english_t2i_R@1": en, "baseline_english_t2i_R@1": base["en"]["t2i_R@1"], "english_gap_points": gap,
        "min_ratio_vs_en": min(r["ratio_vs_en"] for r in table.values()),
        "min_zeroshot_shape": min(r["zeroshot_shape"] for r in table.values()),
        "min_crosslingual_R@1": min((r["crosslingual_R@1"] for r in others), default=float("nan")),
        "targets_met": ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in met.items()),
        "wall_s": round(time.perf_counter() - t0, 1),
        "per_language": table, "tokens_per_caption": tokens,
    }  # fmt: skip
    print(f"English t2i R@1 {en:.4f} vs {args.baseline} {base['en']['t2i_R@1']:.4f} (gap {gap:.2f} points); targets: {figures['targets_met']}")
    if args.json:
        write_json(args.json, figures, machine)


if __name__ == "__main__":
    main()
