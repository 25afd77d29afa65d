"""Training throughput: cliplab's trainer against open_clip's own training loop, in one process.

    python benchmarks/train_throughput.py [--steps 10] [--batch-size 64] [--precision fp32]

Both train the bundled model's architecture (cliplab:shapes-tiny, random init) with CLIP's loss,
AdamW and a cosine schedule, batch-building in one worker process, on the same data: open_clip's
``synthetic`` dataset (one blank image, one dummy caption) and the same pairs fed to cliplab's
trainer. Each loop runs ``steps`` and ``3 * steps`` optimizer steps; the difference of the two wall
times is the time of ``2 * steps`` steps without start-up, from which samples/s are computed.
Needs ``pip install "open-clip-torch[training]"`` (braceexpand, webdataset) for open_clip_train.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from cliplab.models.bundled import BUNDLED
from cliplab.models.openclip_backend import OpenClipModel
from cliplab.train import TrainConfig, train

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


def time_cliplab(steps: int, batch_size: int, precision: str, tmp: Path) -> float:
    cfg = bundled_cfg()
    model = OpenClipModel.from_config("cliplab:shapes-tiny", cfg["model_cfg"], cfg["preprocess_cfg"], None, device="cpu")
    config = TrainConfig(model="cliplab:shapes-tiny", data="blank", objectives="clip", steps=steps, batch_size=batch_size, lr=5e-4,
                         warmup=1, grad_clip=None, precision=precision, out=str(tmp / f"cliplab-{steps}"), ckpt_every=0,
                         eval_n=0, log_every=steps, workers=1, progress=False)  # fmt: skip
    start = time.perf_counter()
    train(config, model=model, batches=lambda s: BlankPairs(model, batch_size))
    return time.perf_counter() - start


def time_open_clip(steps: int, batch_size: int, precision: str, tmp: Path) -> float:
    import open_clip
    from open_clip_train.main import main

    cfg_file = tmp / f"{ARCH}.json"
    cfg_file.write_text(json.dumps(bundled_cfg()["model_cfg"]))
    open_clip.add_model_config(cfg_file)
    argv = ["--dataset-type", "synthetic", "--train-num-samples", str(steps * batch_size), "--batch-size", str(batch_size),
            "--model", ARCH, "--epochs", "1", "--workers", "1", "--lr", "5e-4", "--warmup", "1", "--precision",
            {"fp32": "fp32", "bf16": "amp_bf16", "fp16": "amp"}[precision], "--logs", str(tmp / "oc"), "--name", f"oc-{steps}",
            "--report-to", "", "--zeroshot-frequency", "0", "--val-frequency", "0", "--log-every-n-steps", str(steps), "--seed", "0"]  # fmt: skip
    start = time.perf_counter()
    main(argv)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    args = p.parse_args()
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in (("open_clip_train", time_open_clip), ("cliplab", time_cliplab)):
            short = fn(args.steps, args.batch_size, args.precision, Path(tmp))
            long = fn(3 * args.steps, args.batch_size, args.precision, Path(tmp))
            rates[name] = 2 * args.steps * args.batch_size / max(long - short, 1e-9)
            print(f"{name}: {rates[name]:.1f} samples/s ({2 * args.steps} steps of {args.batch_size}, {args.precision}, {torch.get_num_threads()} threads)", flush=True)
    print(f"ratio cliplab / open_clip_train: {rates['cliplab'] / rates['open_clip_train']:.2f}")


if __name__ == "__main__":
    main()
