"""Training throughput: cliplab's trainer against open_clip's own training loop, in one process.

    python benchmarks/train_throughput.py [--steps 10] [--batch-size 64] [--precision fp32] [--json FILE]

Both train the bundled model's architecture (cliplab:shapes-tiny, random init) with CLIP's loss,
AdamW and a cosine schedule, batch-building in one worker process, on the same data: open_clip's
``synthetic`` dataset (one blank image, one dummy caption) and the same pairs fed to cliplab's
trainer. Both loops are timed the same way: a global optimizer step hook
(``torch.optim.optimizer.register_optimizer_step_post_hook``) stamps the end of every AdamW step;
samples/s = batch size x (steps after the ``--warmup`` steps) / (time from the end of the last
warm-up step to the end of the last step). Start-up, evaluation and checkpointing never enter it.
A loop that ran fewer steps than asked is reported as an error, never as a figure.
Needs ``pip install -e ".[train-bench]"`` (open_clip_train's braceexpand and webdataset).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torch.optim.optimizer import register_optimizer_step_post_hook

from cliplab.models.bundled import BUNDLED
from cliplab.models.openclip_backend import OpenClipModel
from cliplab.train import TrainConfig, train

from _machine import add_json_option, print_machine, write_json

ARCH = "cliplab-shapes-tiny"
CAPTION = "Dummy caption"  # open_clip_train's SyntheticDataset caption


def bundled_cfg() -> dict:
    return json.loads(BUNDLED["shapes-tiny"].config.read_text())


class BlankPairs(torch.utils.data.IterableDataset):
    """What open_clip's synthetic dataset yields, as cliplab trainer batches."""

    def __init__(self, model: OpenClipModel, batch_size: int) -> None:
        super().__init__()
        image = Image.new("RGB", (64, 64))
        self.batch = {"ids": [str(i) for i in range(batch_size)], "pixels": model.preprocess(image).expand(batch_size, -1, -1, -1).clone(),
                      "tokens": model.tokenize([CAPTION] * batch_size), "caption_ids": torch.arange(batch_size)}  # fmt: skip

    def __iter__(self):
        while True:
            yield self.batch


class StepClock:
    """The end time of every optimizer step taken while it is installed."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self._handle = register_optimizer_step_post_hook(lambda *_: self.stamps.append(time.perf_counter()))

    def samples_per_second(self, name: str, steps: int, warmup: int, batch_size: int) -> float:
        """Steady-state rate over the steps after ``warmup``; a loop that did not run ``steps`` steps is an error."""
        self._handle.remove()
        if len(self.stamps) != steps:
            raise SystemExit(f"{name} ran {len(self.stamps)} optimizer steps, not {steps}: no figure printed")
        return batch_size * (steps - warmup) / (self.stamps[-1] - self.stamps[warmup - 1])


def time_cliplab(steps: int, batch_size: int, precision: str, tmp: Path) -> None:
    cfg = bundled_cfg()
    model = OpenClipModel.from_config("cliplab:shapes-tiny", cfg["model_cfg"], cfg["preprocess_cfg"], None, device="cpu")
    config = TrainConfig(model="cliplab:shapes-tiny", data="blank", objectives="clip", steps=steps, batch_size=batch_size, lr=5e-4,
                         warmup=1, grad_clip=None, precision=precision, out=str(tmp / f"cliplab-{steps}"), ckpt_every=0,
                         eval_n=0, log_every=steps, workers=1, progress=False)  # fmt: skip
    train(config, model=model, batches=lambda s: BlankPairs(model, batch_size))


def time_open_clip(steps: int, batch_size: int, precision: str, tmp: Path) -> None:
    import open_clip

    try:
        from open_clip_train.main import main
    except ImportError as exc:
        raise SystemExit(f"open_clip_train needs {exc.name}: pip install -e \".[train-bench]\"") from exc

    cfg_file = tmp / f"{ARCH}.json"
    cfg_file.write_text(json.dumps(bundled_cfg()["model_cfg"]))
    open_clip.add_model_config(cfg_file)
    argv = ["--dataset-type", "synthetic", "--train-num-samples", str(steps * batch_size), "--batch-size", str(batch_size),
            "--model", ARCH, "--epochs", "1", "--workers", "1", "--lr", "5e-4", "--warmup", "1", "--precision",
            {"fp32": "fp32", "bf16": "amp_bf16", "fp16": "amp"}[precision], "--logs", str(tmp / "oc"), "--name", f"oc-{steps}",
            "--report-to", "", "--zeroshot-frequency", "0", "--val-frequency", "0", "--log-every-n-steps", str(steps), "--seed", "0"]  # fmt: skip
    main(argv)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per loop")
    p.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    add_json_option(p)
    args = p.parse_args()
    if not 1 <= args.warmup < args.steps - 1:
        p.error("--warmup must be at least 1 and leave at least 2 timed steps")
    machine = print_machine()
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in (("open_clip_train", time_open_clip), ("cliplab", time_cliplab)):
            clock = StepClock()
            fn(args.steps, args.batch_size, args.precision, Path(tmp))
            rates[name] = clock.samples_per_second(name, args.steps, args.warmup, args.batch_size)
            timed = args.steps - args.warmup
            print(f"{name}: {rates[name]:.1f} samples/s ({timed} steps of {args.batch_size} after {args.warmup} warm-up, {args.precision}, {torch.get_num_threads()} threads)", flush=True)
    print(f"ratio cliplab / open_clip_train: {rates['cliplab'] / rates['open_clip_train']:.2f}")
    if args.json:
        figures = {"precision": args.precision, "batch_size": args.batch_size, "timed_steps": args.steps - args.warmup,
                   **{f"{name}_samples_s": rate for name, rate in rates.items()}, "ratio": rates["cliplab"] / rates["open_clip_train"]}  # fmt: skip
        write_json(args.json, figures, machine)


if __name__ == "__main__":
    main()
