"""Peak RSS and input-pipeline speed of `train --dataset DIR` on phone-size JPEGs (issue #12).

Generates N 2000x1500 JPEGs per size from scikit-learn's two real sample photos (random
crops, flips, scales, plus noise), two classes, then:

- memory: runs `basisnet-deploy train --dataset DIR --preset demo --epochs 1` in a child
  process per size and reads the child's peak RSS (os.wait4 ru_maxrss);
- speed: steps/s of the last epoch streaming the JPEG folder, without and with ``--cache``
  (no augmentation, so every side does the same work), against the same images decoded
  into memory first (MemorySource).

    .venv/bin/python benchmarks/train_memory.py --sizes 1000 10000 --speed-size 1000 \
        --json benchmarks/results/train_memory.json

Record exactly the sizes run; on a loaded 2-core machine smaller sizes may be all that fits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_utils import run_child, write_result  # noqa: E402

CLI = [sys.executable, "-c", "import sys; from basisnet_deploy.cli import main; main(sys.argv[1:])"]


def make_folder(root: Path, n: int, seed: int = 0) -> Path:
    """n JPEGs of 2000x1500 in root/<class>/, made from the two sample photos; reused.

    The photos live in one pool beside ``root`` (image i is the same in every folder), and a
    folder of n holds hard links to the pool's first n: a 10,000 folder costs 9,000 new
    images after a 1,000 one, not 10,000.
    """
    pool = root.parent / "pool"
    for c in ("china", "flower"):
        (root / c).mkdir(parents=True, exist_ok=True)
        (pool / c).mkdir(parents=True, exist_ok=True)
    maker = _PhotoMaker(seed)
    for i in range(n):
        name = Path(("china", "flower")[i % 2]) / f"{i:06d}.jpg"
        if not (pool / name).exists():
            maker.save(i, pool / name)
        if not (root / name).exists():
            os.link(pool / name, root / name)
    return root


class _PhotoMaker:
    """Image i: a random crop of sample photo i % 2, scaled to 2000x1500, maybe mirrored,
    plus sensor-like noise (a shifted window of one noise field: cheap, and no two images
    share their pixels). Seeded per image, so image i is the same whatever is made first."""

    def __init__(self, seed: int):
        from sklearn.datasets import load_sample_images

        self.photos = [Image.fromarray(p) for p in load_sample_images().images]
        self.seed = seed
        # Noise in [0, 24], added with an offset of -12 and clipped by ImageChops.add (C code:
        # a NumPy int16 round trip cost 0.34 s an image).
        field = np.random.default_rng(seed).integers(0, 25, (1700, 2200, 3), dtype=np.uint8)
        self.noise = Image.fromarray(field)

    def save(self, i: int, path: Path) -> None:
        rng = np.random.default_rng([self.seed, i])
        src = self.photos[i % 2]
        w, h = src.size
        cw, ch = int(w * rng.uniform(0.6, 1)), int(h * rng.uniform(0.6, 1))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        im = src.crop((x, y, x + cw, y + ch)).resize((2000, 1500), Image.BILINEAR)
        if rng.random() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        dy, dx = int(rng.integers(0, 200)), int(rng.integers(0, 200))
        noise = self.noise.crop((dx, dy, dx + 2000, dy + 1500))
        tmp = path.with_suffix(".tmp")
        ImageChops.add(im, noise, scale=1.0, offset=-12).save(tmp, format="JPEG", quality=90)
        tmp.replace(path)  # a killed run leaves no truncated JPEG under the final name


def peak_rss_training(folder: Path, out: Path, extra=()) -> dict:  # noqa: D401
    """Train one epoch of the demo preset in a child; its peak RSS and its JSON report."""
    cmd = [*CLI, "train", "--dataset", str(folder), "--preset", "demo", "--classes", "2",
           "--epochs", "1", "--out", str(out), "--json", *extra]
    stdout, rss_mb, wall = run_child(cmd)
    report = json.loads(stdout)
    return {"peak_rss_mb": rss_mb, "wall_s": wall,
            "train_examples": report["train_examples"], "epochs": report["epochs"]}


def speed(folder: Path, cache: Path, epochs: int = 2, rounds: int = 3) -> dict:
    """Last-epoch steps/s: the JPEG folder streamed (no cache, then with ``--cache``, whose
    first epoch fills it) against the same files decoded into memory first (MemorySource).
    Augmentation off, so all three do the same work per step. The three alternate for
    ``rounds`` rounds, so a change in the machine's load falls on all of them; medians."""
    import statistics

    per_round = [_speed_round(folder, cache, epochs, r) for r in range(rounds)]
    rate = {k: statistics.median(r[k] for r in per_round) for k in per_round[0]}
    steps = per_round[0]["steps"]
    for r in per_round:
        r.pop("steps")
    return {"images": len(list_folder_paths(folder)), "epochs": epochs, "steps_per_epoch": steps,
            "rounds": rounds, "per_round_steps_per_s": per_round,
            **{f"{k}_steps_per_s": round(v, 3) for k, v in rate.items() if k != "steps"},
            "streamed_over_memory": round(rate["streamed"] / rate["in_memory"], 3),
            "cached_over_memory": round(rate["streamed_cached"] / rate["in_memory"], 3)}


def list_folder_paths(folder: Path) -> list:
    from basisnet_deploy.data.folders import list_folder

    return list_folder(folder).paths


def _speed_round(folder: Path, cache: Path, epochs: int, rotate: int) -> dict:
    """One run of each input, in an order rotated by ``rotate`` (no input always goes first)."""
    import shutil

    from basisnet_deploy.data import Dataset, Preprocessing
    from basisnet_deploy.data.folders import list_folder, read_files
    from basisnet_deploy.data.preprocessing import decode_side
    from basisnet_deploy.model.config import PRESETS, TrainSettings
    from basisnet_deploy.training.trainer import RunOptions, train

    arch, pre = PRESETS["demo"], Preprocessing()
    settings = TrainSettings(epochs=epochs, batch_size=64)
    files = list_folder(folder)
    shutil.rmtree(cache, ignore_errors=True)
    # Decoded as the streamed runs decode them (reduced-scale JPEG), so all three do the same
    # work per step and differ only in where the pixels come from.
    images, labels, _ = read_files(files, decode_side(pre, arch.resolution, arch.light_resolution))
    memory = Dataset(images, labels, files.class_names, source="memory")
    inputs = {"streamed": (files, RunOptions(augment=False)),
              "streamed_cached": (files, RunOptions(augment=False, cache_dir=str(cache))),
              "in_memory": (memory, RunOptions())}
    names = list(inputs)
    names = names[rotate % 3:] + names[:rotate % 3]
    runs = {name: train(inputs[name][0], arch, pre, settings, None, inputs[name][1]) for name in names}
    steps = runs["streamed"].metrics["steps"] // epochs
    rate = {k: round(steps / r.metrics["epochs"][-1]["seconds"], 3) for k, r in runs.items()}
    print(rate, flush=True)
    return {**rate, "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000])
    ap.add_argument("--speed-size", type=int, default=1000, help="0 to skip the speed comparison")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "basisnet-train-bench"))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="speed: alternating rounds (medians)")
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    work = Path(args.work)
    result = {"command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
              "image_size": "2000x1500 JPEG q90", "preset": "demo", "memory": {}}
    for n in args.sizes:
        folder = make_folder(work / f"n{n}", n)
        result["memory"][str(n)] = peak_rss_training(folder, work / f"ckpt{n}",
                                                     ["--batch-size", str(args.batch_size)])
        print(n, result["memory"][str(n)], flush=True)
    if args.speed_size:
        result["speed"] = speed(make_folder(work / f"n{args.speed_size}", args.speed_size),
                                work / "cache", rounds=args.rounds)
        result["load_after"] = round(os.getloadavg()[0], 1)
        print(result["speed"], flush=True)
    write_result(result, args.json_out)


if __name__ == "__main__":
    main()
