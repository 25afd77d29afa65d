"""Does un²CLIP's frozen decoder read which object has which colour? Its denoising loss on colour-exchanged twins.

    PYTHONPATH=src python benchmarks/un2clip.py --out DIR          # writes DIR/decoder.safetensors
    PYTHONPATH=src python benchmarks/un2clip_binding.py --decoder DIR [--model cliplab:shapes-vit] [--json FILE]

un²CLIP can only teach the image tower a detail that the frozen decoder reads from the embedding. For
the colour-exchanged pairs (``cliplab eval mmvp``'s ``color_swap``: the same scene with its two objects'
colours exchanged) that detail is the binding of colours to objects. Per band of diffusion timesteps,
on twin pairs of ``--split`` (the train split by default: scenes like those the decoder saw, never the
evaluation's test pairs), each image ``x_a`` is noised with the same ``(t, eps)`` and denoised under
three conditions, the embeddings of ``--model`` (the model whose embeddings trained the decoder, or a
tuned one):

- ``own``: ``x_a``'s own embedding; ``twin``: its twin's (same objects and colours, exchanged);
- ``unrelated``: another pair's scene, the baseline: how much the condition matters at all.

``binding_over_scene = (twin - own) / (unrelated - own)``: the share of the decoder's use of the
condition that tells twins apart (0: blind to binding). The fine-tune's direction: the cosine between
the descent direction of the loss on the (normalised) embedding and (i) the text tower's binding
direction ``t_own - t_twin`` of the two full captions (moving along it is what makes a pair correct),
(ii) ``e_own - e_twin`` (positive: the twins are pushed apart).
"""

from __future__ import annotations

import argparse

from _machine import add_json_option, print_machine, write_json

BANDS = ((0.0, 0.1), (0.1, 0.3), (0.3, 0.5), (0.5, 0.7), (0.7, 1.0))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--decoder", required=True, help="a folder that cliplab un2clip (or benchmarks/un2clip.py --out) wrote, or its decoder.safetensors")
    p.add_argument("--model", default="cliplab:shapes-vit", help="the model whose image embeddings condition the decoder")
    p.add_argument("--pairs", type=int, default=300)
    p.add_argument("--pairs-seed", type=int, default=11)
    p.add_argument("--split", default="train")
    p.add_argument("--draws", type=int, default=8, help="(t, eps) draws per image and band")
    p.add_argument("--threads", type=int, default=1)
    add_json_option(p)
    args = p.parse_args()
    import warnings

    import torch
    import torch.nn.functional as F

    from cliplab.data import synthetic
    from cliplab.evaluate.tasks.mmvp import make_pairs
    from cliplab.models import load_model
    from cliplab.train.decoder import decoder_target
    from cliplab.train.diffusion import STEPS, DiffusionDecoder, q_sample
    from cliplab.train.un2clip import embed_pixels, load_decoder, preprocess_all

    torch.set_num_threads(args.threads)
    machine = print_machine()
    decoder = load_decoder(args.decoder)
    if not isinstance(decoder, DiffusionDecoder):
        raise SystemExit(f"{args.decoder}: a diffusion decoder is needed (this one is a regression decoder)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(args.model, device="cpu")
    pairs = make_pairs("color_swap", args.pairs, args.pairs_seed, args.split)
    pixels = [preprocess_all(model, [synthetic.render(s, 64).image for s in side]) for side in (pairs.first, pairs.second)]
    emb = [embed_pixels(model, px) for px in pixels]
    x0 = [decoder_target(px, decoder.size) for px in pixels]
    texts = [torch.as_tensor(model.encode_texts(caps)) for caps in pairs.captions("full")]
    text = texts[0] - texts[1]  # the text tower's binding direction of the first image (the second's is its negative)
    gen = torch.Generator().manual_seed(0)

    def band_figures(lo: float, hi: float) -> tuple[dict, dict]:
        own, twin, other, cos_text, cos_apart = [], [], [], [], []
        for side, sign in ((0, 1.0), (1, -1.0)):
            e = emb[side].clone().requires_grad_(True)
            losses = {"own": 0.0, "twin": 0.0, "unrelated": 0.0}
            for _ in range(args.draws):
                t = torch.randint(int(lo * STEPS), int(hi * STEPS), (len(e),), generator=gen)
                eps = torch.randn(x0[side].shape, generator=gen)
                xt = q_sample(x0[side], t, eps, decoder.alpha_bars)
                losses["own"] = losses["own"] + (decoder(xt, t, e) - eps).pow(2).mean((1, 2, 3))
                with torch.no_grad():
                    losses["twin"] = losses["twin"] + (decoder(xt, t, emb[1 - side]) - eps).pow(2).mean((1, 2, 3))
                    losses["unrelated"] = losses["unrelated"] + (decoder(xt, t, emb[side].roll(1, 0)) - eps).pow(2).mean((1, 2, 3))
            (grad,) = torch.autograd.grad(losses["own"].sum(), e)
            e = e.detach()
            descent = -(grad - (grad * e).sum(1, keepdim=True) * e)  # tangent to the unit sphere
            own.append(losses["own"].detach() / args.draws)
            twin.append(losses["twin"] / args.draws)
            other.append(losses["unrelated"] / args.draws)
            cos_text.append(F.cosine_similarity(descent, sign * text, dim=1))
            cos_apart.append(F.cosine_similarity(descent, emb[side] - emb[1 - side], dim=1))
        own, twin, other = torch.cat(own), torch.cat(twin), torch.cat(other)
        cos_text, cos_apart = torch.cat(cos_text), torch.cat(cos_apart)
        loss = {"own": own.mean().item(), "twin": twin.mean().item(), "unrelated": other.mean().item(),
                "binding_gap": (twin - own).mean().item(), "scene_gap": (other - own).mean().item(),
                "binding_over_scene": ((twin - own).mean() / (other - own).mean()).item(),
                "own_below_twin_share": (own < twin).float().mean().item()}  # fmt: skip
        return loss, {"cos_text_binding": cos_text.mean().item(), "cos_twins_apart": cos_apart.mean().item()}

    losses, directions = {}, {}
    for lo, hi in BANDS:
        name = f"t in [{lo:g}, {hi:g})"
        losses[name], directions[name] = band_figures(lo, hi)
    twin_cos = (emb[0] * emb[1]).sum(1).mean().item()
    text_cos = (texts[0] * texts[1]).sum(1).mean().item()
    print(f"{'band':<16} {'own':>7} {'twin':>7} {'unrelated':>9} {'binding/scene':>13} {'own<twin':>8} {'cos(descent,text)':>17} {'cos(descent,apart)':>18}")
    for name, r in losses.items():
        g = directions[name]
        print(f"{name:<16} {r['own']:>7.4f} {r['twin']:>7.4f} {r['unrelated']:>9.4f} {r['binding_over_scene']:>13.4f} "
              f"{r['own_below_twin_share']:>8.2f} {g['cos_text_binding']:>+17.4f} {g['cos_twins_apart']:>+18.4f}")  # fmt: skip
    print(f"{len(pairs.first)} colour-exchanged pairs ({args.split}, seed {args.pairs_seed}); twins' image cosine {twin_cos:.4f}, "
          f"their captions' text cosine {text_cos:.4f}")
    if args.json:
        figures = {"pairs": len(pairs.first), "twin_image_cosine": twin_cos, "twin_text_cosine": text_cos,
                   "denoising_loss": losses, "descent_direction": directions}  # fmt: skip
        write_json(args.json, figures, machine)


if __name__ == "__main__":
    main()
