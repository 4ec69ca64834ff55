"""Peak RSS of `basisnet-deploy verify EXPORT --images DIR` for two folder sizes.

Targets: peak RSS within 1.1x from the small folder to the large one, and under 2.5 GB
for a full-size export (``--preset mv3``: the paper's BasisNet-MV3).

Model: a random-init checkpoint of the preset (BN statistics from real images,
_random_init.py; its agreement figures mean nothing, only memory and speed are measured),
labels the twelve photo classes of tests/photo_fixture.py (plus filler names up to the
preset's class count), exported as float32 TFLite (--specialist picks the forms). Images:
real-photo crops from tests/photo_fixture.py, written once into a pool and hard-linked into
a folder per size. Each verify runs in a child process; its peak RSS is ``os.wait4``'s
ru_maxrss, its images/s the command's own figure.

    .venv/bin/python benchmarks/verify_memory.py --preset demo --sizes 100 2000 \
        --json benchmarks/results/verify_memory_demo.json
    .venv/bin/python benchmarks/verify_memory.py --preset mv3 --sizes 100 500 \
        --json benchmarks/results/verify_memory_mv3.json

Record exactly the sizes run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from _bench_utils import run_child, write_result  # noqa: E402

CLI = [sys.executable, "-c", "import sys; from basisnet_deploy.cli import main; main(sys.argv[1:])"]


def make_pool(pool: Path, n: int, size: int) -> Path:
    """At least ``n`` held-out photo crops under ``pool/heldout/<class>/`` (reused if there)."""
    from tests.photo_fixture import PHOTOS, build

    per_class = -(-n // len(PHOTOS))
    built = [int(p.name.split("-")[1]) for p in pool.glob(f".built-*-{size}")]
    if not built or max(built) < per_class:
        shutil.rmtree(pool, ignore_errors=True)
        build(pool, train_per_class=0, heldout_per_class=per_class, size=size)
        (pool / f".built-{per_class}-{size}").touch()
    return pool / "heldout"


def make_folder(pool: Path, folder: Path, n: int) -> Path:
    """``folder/<class>/`` holding hard links to ``n`` of the pool's crops, spread over the
    classes; rebuilt each time, so it holds exactly ``n``."""
    shutil.rmtree(folder, ignore_errors=True)
    classes = sorted(p.name for p in pool.iterdir() if p.is_dir())
    files = {c: sorted((pool / c).iterdir()) for c in classes}
    for i in range(n):
        c = classes[i % len(classes)]
        src = files[c][i // len(classes)]
        dst = folder / c / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            os.link(src, dst)
    return folder


def photo_export(work: Path, photo_size: int, pool_size: int, sample: int, preset: str,
                 specialist: str = "all") -> tuple[Path, Path]:
    """(photo pool, export) every scoring benchmark starts from: a pool of ``pool_size`` real
    photo crops and a random-init export of ``preset`` whose BN statistics come from a folder of
    ``sample`` of them."""
    pool = make_pool(work / f"pool-{photo_size}", pool_size, photo_size)
    classes = sorted(p.name for p in pool.iterdir() if p.is_dir())
    folder = make_folder(pool, work / f"n{sample}-{photo_size}", sample)
    return pool, make_export(work, preset, classes, specialist, folder)


def run_header() -> dict:
    """The command line and the machine with its load, which each result starts with."""
    return {"command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"}


def make_export(work: Path, preset: str, classes: list[str], specialist: str, images: Path) -> Path:
    """A random-init checkpoint of ``preset`` exported as float32 TFLite (reused if there)."""
    import dataclasses

    import numpy as np

    from _random_init import normalize_bn
    from basisnet_deploy.data import Preprocessing, load_image, preprocess
    from basisnet_deploy.export.pipeline import ExportOptions, export
    from basisnet_deploy.model import checkpoint
    from basisnet_deploy.model.config import PRESETS, BasisNetConfig
    from basisnet_deploy.model.network import BasisNet

    out = work / f"export-{preset}-{specialist}"
    if (out / "manifest.json").exists():
        return out
    arch = PRESETS[preset]
    arch = dataclasses.replace(arch, num_classes=max(arch.num_classes, len(classes)))
    labels = tuple(classes) + tuple(f"c{i}" for i in range(len(classes), arch.num_classes))
    pre = Preprocessing()
    net = BasisNet(arch)
    photos = [load_image(p) for p in sorted(images.rglob("*.*"))[:16]]
    normalize_bn(net.lightweight, np.stack([preprocess(im, arch.light_resolution, pre) for im in photos]))
    coeff = np.full((len(photos), len(arch.nonshared_blocks), arch.bases), 1.0 / arch.bases, np.float32)
    normalize_bn(net.specialist, [np.stack([preprocess(im, arch.resolution, pre) for im in photos]), coeff])
    cfg = BasisNetConfig(arch, pre, labels, {"note": "random init, for memory and speed only"})
    ckpt = checkpoint.save(work / f"ckpt-{preset}", net, cfg)
    export(ckpt, out, ExportOptions(target="tflite", specialist=specialist, verify_images=8,
                                    images=str(images), min_agreement=0.0))
    return out


def peak_rss_verify(export_dir: Path, folder: Path) -> dict:
    """``verify EXPORT --images folder --json`` in a child: peak RSS, wall time, its figures."""
    stdout, rss_mb, wall = run_child([*CLI, "verify", str(export_dir), "--images", str(folder), "--json"])
    v = json.loads(stdout)
    return {"peak_rss_mb": rss_mb, "wall_s": wall, "images": v["images"],
            "skipped": v["skipped"]["count"], "verify_seconds": v["seconds"],
            "images_per_s": v["images_per_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo", help="model preset (mv3: full size)")
    ap.add_argument("--sizes", type=int, nargs=2, default=[100, 5000])
    ap.add_argument("--specialist", default="all", choices=["coefficient", "presynth", "all"])
    ap.add_argument("--photo-size", type=int, default=256, help="long side of each crop, px")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "basisnet-verify-bench"))
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    work = Path(args.work)
    pool, export_dir = photo_export(work, args.photo_size, max(args.sizes), min(args.sizes),
                                    args.preset, args.specialist)
    result = {**run_header(), "verify_command": "basisnet-deploy verify EXPORT --images DIR --json",
              "preset": args.preset, "specialist": args.specialist,
              "photos": f"tests/photo_fixture.py crops, long side {args.photo_size} px",
              "runs": {}}
    for n in args.sizes:
        folder = make_folder(pool, work / f"n{n}-{args.photo_size}", n)
        result["runs"][str(n)] = peak_rss_verify(export_dir, folder)
        print(n, result["runs"][str(n)], flush=True)
    lo, hi = (result["runs"][str(n)]["peak_rss_mb"] for n in sorted(args.sizes))
    result["rss_ratio_large_over_small"] = round(hi / lo, 3)
    result["load_after"] = round(os.getloadavg()[0], 1)
    write_result(result, args.json_out)


if __name__ == "__main__":
    main()
