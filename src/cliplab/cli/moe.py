"""``cliplab moe upcycle``: a dense CLIP turned into a mixture of experts (CLIP-MoE)."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from cliplab.cli import app
from cliplab.cli.common import (
    ModelOption,
    ProgressOption,
    user_errors,
    warnings_as_lines,
)
from cliplab.train.config import UpcycleConfig

moe_app = typer.Typer(help="Mixture-of-experts CLIP models (CLIP-MoE, Zhang et al. 2025).", no_args_is_help=True)
app.add_typer(moe_app, name="moe")

_D = UpcycleConfig()
_TOWERS = ",".join(_D.towers)


@moe_app.command("upcycle")
def upcycle_command(
    data: str = typer.Option(..., "--data", "--images", "-i", help="Captioned training pairs: a folder, a .csv/.tsv/.jsonl manifest, .tar shards, or synthetic:<n>[:seed]."),
    out: Path = typer.Option(..., "--out", "-o", help="Model folder to write (absent or empty): model.safetensors, cliplab_model.json, summary.json."),
    model: ModelOption = "cliplab:shapes-vit",
    experts: int = typer.Option(_D.experts, "--experts", min=2, help="Experts per block: the base FFN and one per contrastive stage."),
    top_k: int = typer.Option(_D.top_k, "--top-k", min=1, help="Experts each token uses."),
    towers: str = typer.Option(_TOWERS, "--towers", help="Towers made sparse (and whose FFNs train): image, text or image,text."),
    moe_blocks: int = typer.Option(_D.moe_blocks, "--moe-blocks", min=0, help="How many of each tower's last blocks become MoE (0: every block); only their FFNs train."),
    clusters: int = typer.Option(_D.clusters, "--clusters", min=2, help="KMeans clusters per modality and stage (their product: the joint clusters a batch is drawn from)."),
    emphasis: str = typer.Option(_D.emphasis, "--emphasis", help="none: every cluster's batches alike (the official sampler); hard: clusters drawn in proportion to how badly the previous stage separates their pairs."),
    stage_steps: int = typer.Option(_D.stage_steps, "--stage-steps", min=1, help="Steps of each contrastive stage (FFNs only, within-cluster batches)."),
    router_steps: int = typer.Option(_D.router_steps, "--router-steps", min=1, help="Steps of router-only training."),
    batch_size: int = typer.Option(_D.batch_size, "--batch-size", "-b", min=2, help="Pairs per batch (a batch comes from one cluster)."),
    lr: float = typer.Option(_D.lr, "--lr", help="Peak learning rate of the stages (AdamW, warm-up then cosine)."),
    router_lr: float = typer.Option(_D.router_lr, "--router-lr", help="Peak learning rate of the router training."),
    label_smoothing: float = typer.Option(_D.label_smoothing, "--label-smoothing", min=0.0, help="Label smoothing of the stages' InfoNCE (the official: 0.1 at a logit scale of 100)."),
    router_label_smoothing: float = typer.Option(_D.router_label_smoothing, "--router-label-smoothing", min=0.0, help="Label smoothing of the router's InfoNCE on ordinary batches (the official: 0.1)."),
    seed: int = typer.Option(_D.seed, "--seed", help="Seed of the clusters, batches and router initialisation."),
    progress: ProgressOption = True,
) -> None:
    """Upcycle a dense CLIP into a mixture of experts by diversified multiplet upcycling.

    Stage 0 clusters the base model's image and text features (--clusters KMeans clusters each); each later
    stage fine-tunes only the feed-forward layers of the base model on batches drawn from one cluster
    at a time (so what already tells the clusters apart cannot tell a batch apart), then clusters its
    own features to split the clusters further. The stages' FFNs become the experts of each block, a
    router per block picks the top-k, and only the routers train last (with a load-balancing loss).
    The folder is a model spec: --model OUT on any command, cliplab.load_model("OUT") in Python.
    Runs on the CPU: the defaults on cliplab:shapes-vit and synthetic:4000 took 349 s of CPU time on one thread (6 min).
    """
    from cliplab.train.upcycle import upcycle_model

    config = UpcycleConfig(experts=experts, top_k=top_k, towers=tuple(t.strip() for t in towers.split(",") if t.strip()),
                           moe_blocks=moe_blocks, clusters=clusters, emphasis=emphasis, stage_steps=stage_steps, router_steps=router_steps, batch_size=batch_size, lr=lr, router_lr=router_lr,
                           label_smoothing=label_smoothing, router_label_smoothing=router_label_smoothing, seed=seed)  # fmt: skip
    bar = _Bar(progress)
    try:
        with user_errors(), warnings_as_lines():
            folder = upcycle_model(model, data, out, config, progress=bar)
    finally:
        bar.close()
    import json

    summary = json.loads((folder / "summary.json").read_text())
    typer.echo(f"upcycled {model} into {experts} experts (top-{top_k}) in {summary['wall_s']:.0f} s ({summary['cpu_s']:.0f} s CPU): "
               f"{summary['parameters']:,} parameters, {summary['active_parameters']:,} active; the model: --model {folder}")  # fmt: skip


class _Bar:
    """One tqdm bar per phase of the run, on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.phase, self.bar = enabled, None, None

    def __call__(self, phase: str, done: int, total: int, loss: float) -> None:
        if not self.enabled:
            return
        if phase != self.phase:
            from tqdm.auto import tqdm

            self.close()
            self.phase, self.bar = phase, tqdm(total=total, desc=phase, unit="pair" if math.isnan(loss) else "step", dynamic_ncols=True)
        self.bar.n = done
        if not math.isnan(loss):
            self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
