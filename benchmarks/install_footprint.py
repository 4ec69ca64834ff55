"""Runtime-only install vs full install: size on disk and `predict` start-up.

    python benchmarks/install_footprint.py --export runs/demo/export-tflite --image IMG \
        [--runs 7] [--out benchmarks/results/install_footprint.json]

Builds two fresh virtual environments from this checkout with the pinned constraints:
- ``runtime``: ``pip install .`` (LiteRT, onnxruntime, NumPy, Pillow; no TensorFlow);
- ``full``: ``pip install '.[convert]'`` (adds TensorFlow, Keras, tf2onnx).
For each it records the site-packages size and the median wall time of
``basisnet-deploy predict EXPORT IMAGE`` (a new process each run, so imports are counted).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _make_venv(where: Path, spec: str) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    pip = [str(where / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--upgrade", "pip"], check=True)
    subprocess.run(pip + ["-c", str(ROOT / "constraints.txt"), spec], check=True)
    return where


def _site_packages(venv: Path) -> Path:
    (sp,) = venv.glob("lib/python*/site-packages")
    return sp


def _startup(venv: Path, export: str, image: str, runs: int) -> dict:
    cmd = [str(venv / "bin" / "basisnet-deploy"), "predict", export, image, "--json"]
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    tf = subprocess.run([str(venv / "bin" / "python"), "-c", "import tensorflow"],
                        capture_output=True).returncode == 0
    return {"predict_median_s": round(statistics.median(times), 3),
            "predict_all_s": [round(t, 3) for t in times], "tensorflow_importable": tf}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", required=True, help="a TFLite export directory")
    ap.add_argument("--image", required=True, help="one image file to predict")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/install_footprint.json"))
    args = ap.parse_args()
    results = {"machine": f"{platform.machine()}, {platform.python_version()}",
               "command": " ".join(["python", *sys.argv])}
    with tempfile.TemporaryDirectory(prefix="footprint-") as tmp:
        for name, spec in (("runtime", str(ROOT)), ("full", f"{ROOT}[convert]")):
            venv = _make_venv(Path(tmp) / name, spec)
            results[name] = {"pip_spec": spec.replace(str(ROOT), "."),
                             "site_packages_mb": round(_tree_bytes(_site_packages(venv)) / 1e6, 1),
                             **_startup(venv, args.export, args.image, args.runs)}
            print(name, results[name], flush=True)
    results["size_ratio_full_over_runtime"] = round(
        results["full"]["site_packages_mb"] / results["runtime"]["site_packages_mb"], 2)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
