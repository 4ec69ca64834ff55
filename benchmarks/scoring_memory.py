"""Peak RSS of export's verification, report, calibrate-threshold and evaluate on photos.

Also verification throughput (images/s) of the streamed path against the stacked one.

Same model, photos and measurement as verify_memory.py (a random-init checkpoint of the
preset, float32 TFLite with every specialist form, real-photo crops hard-linked into one
folder per size; each command in a child process, peak RSS from ``os.wait4``'s ru_maxrss).
One measurement per call, so the heavy ones run one at a time:

    # export CKPT --images DIR --verify-images N: the whole export, verification included
    .venv/bin/python benchmarks/scoring_memory.py export --preset mv3 --sizes 100 \
        --json benchmarks/results/export_verify_memory_mv3.json
    # report / calibrate-threshold on two folder sizes (target: within 1.1x)
    .venv/bin/python benchmarks/scoring_memory.py report --preset mv3 --sizes 100 5000 \
        --json benchmarks/results/report_memory_mv3.json
    .venv/bin/python benchmarks/scoring_memory.py calibrate-threshold --preset mv3 \
        --sizes 100 5000 --json benchmarks/results/threshold_memory_mv3.json
    # evaluate CKPT --dataset DIR (the float checkpoint, no export)
    .venv/bin/python benchmarks/scoring_memory.py evaluate --preset mv3 --sizes 100 2000 \
        --json benchmarks/results/evaluate_memory_mv3.json
    # the same photos through the evaluate before streaming: memory, and equal figures (the
    # demo preset: that evaluate wants the folder's classes to be all the labels, in order)
    .venv/bin/python benchmarks/scoring_memory.py evaluate --preset demo --sizes 100 2000 \
        --old 555aaaf --compare-old --json benchmarks/results/evaluate_vs_before_demo.json
    # verify_export() timed in a child, this tree against a git revision's (--old REV)
    .venv/bin/python benchmarks/scoring_memory.py throughput --preset mv3 --sizes 100 \
        --old 495ad4f --repeats 3 --json benchmarks/results/verify_throughput_mv3_repeats.json

Record exactly the sizes run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from _bench_utils import run_child, write_result  # noqa: E402
from verify_memory import CLI, make_folder, photo_export, run_header  # noqa: E402

# verify_export() timed inside the child (TensorFlow's import left out); the tree to import
# is the first argument.
TIMED_VERIFY = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from basisnet_deploy.export.verify import verify_export
start = time.perf_counter()
v = verify_export(sys.argv[2], sys.argv[3])
seconds = time.perf_counter() - start
v = v.to_json() if hasattr(v, "to_json") else v  # a tree whose verify_export returns plain JSON
n = v.get("images", v.get("lightweight", {}).get("images"))
print(json.dumps({"images": n, "seconds": round(seconds, 2),
                  "images_per_s": round(n / seconds, 3) if n else None}))
"""


def run_export(work: Path, ckpt: Path, folder: Path, n: int) -> dict:
    out = work / "export-measured"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [*CLI, "export", str(ckpt), "--out", str(out), "--quantize", "float32",
           "--images", str(folder), "--verify-images", str(n), "--min-agreement", "0", "--json"]
    stdout, rss_mb, wall = run_child(cmd)
    v = json.loads(stdout)["verification"]
    return {"peak_rss_mb": rss_mb, "wall_s": wall, "verified_images": v.get("images")}


def run_report(work: Path, export_dir: Path, folder: Path, n: int) -> dict:
    out = work / f"report-{n}"
    shutil.rmtree(out, ignore_errors=True)
    stdout, rss_mb, wall = run_child([*CLI, "report", str(export_dir), "--images", str(folder),
                                      "--out", str(out), "--json"])
    images = json.loads(stdout)["images"]
    return {"peak_rss_mb": rss_mb, "wall_s": wall, "images": images["count"],
            "skipped": images["skipped"]["count"]}


def run_threshold(work: Path, export_dir: Path, folder: Path, n: int) -> dict:
    copy = work / "export-threshold"  # calibrate-threshold writes into the manifest
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(export_dir, copy)
    stdout, rss_mb, wall = run_child([*CLI, "calibrate-threshold", str(copy), "--images",
                                      str(folder), "--max-drop", "1", "--json"])
    t = json.loads(stdout)
    return {"peak_rss_mb": rss_mb, "wall_s": wall, "images": t["images"],
            "skipped": t["skipped"]["count"]}


def git_tree(work: Path, rev: str) -> Path:
    """``basisnet_deploy`` of revision ``rev``, from ``git archive`` (made once)."""
    tree = work / f"tree-{rev}"
    if not tree.exists():
        tree.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "basisnet_deploy"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def run_evaluate(work: Path, folder: Path, preset: str, old: str | None = None) -> dict:
    """``evaluate CKPT --dataset DIR --json``; with ``old``, that revision's on the same folder
    too: its peak RSS and whether its top-1 figures are equal."""
    args = ["evaluate", str(work / f"ckpt-{preset}"), "--dataset", str(folder), "--json"]
    stdout, rss_mb, wall = run_child([*CLI, *args])
    e = json.loads(stdout)
    out = {"peak_rss_mb": rss_mb, "wall_s": wall, "images": e["examples"],
           "skipped": e["skipped"], "images_per_s": e["images_per_s"],
           "lightweight_top1": e["lightweight_top1"], "specialist_top1": e["specialist_top1"]}
    if old:
        code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
                "from basisnet_deploy.cli import main; main(sys.argv[1:])")
        stdout, rss_mb, wall = run_child([sys.executable, "-c", code, str(git_tree(work, old)), *args])
        o = json.loads(stdout)
        out[f"before ({old})"] = {"peak_rss_mb": rss_mb, "wall_s": wall, "images": o["examples"],
                                  "lightweight_top1": o["lightweight_top1"],
                                  "specialist_top1": o["specialist_top1"]}
        out["same_figures"] = all(o[k] == e[k] for k in ("examples", "lightweight_top1",
                                                          "specialist_top1"))
    return out


def run_throughput(work: Path, export_dir: Path, folder: Path, old: str, repeats: int) -> dict:
    """Each tree ``repeats`` times, alternating which goes first; every run and the median."""
    import statistics

    trees = [("streamed", ROOT), (f"stacked ({old})", git_tree(work, old))]
    out = {name: {"runs": []} for name, _ in trees}
    for r in range(repeats):
        for name, path in (trees if r % 2 == 0 else trees[::-1]):
            stdout, rss_mb, wall = run_child([sys.executable, "-c", TIMED_VERIFY, str(path),
                                              str(export_dir), str(folder)])
            run = {**json.loads(stdout.strip().splitlines()[-1]), "peak_rss_mb": rss_mb,
                   "wall_s": wall, "load": round(os.getloadavg()[0], 1)}
            out[name]["runs"].append(run)
            print(name, run, flush=True)
    for name in out:
        out[name]["median_images_per_s"] = statistics.median(
            r["images_per_s"] for r in out[name]["runs"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["export", "report", "calibrate-threshold", "evaluate",
                                     "throughput"])
    ap.add_argument("--preset", default="demo", help="model preset (mv3: full size)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100])
    ap.add_argument("--old", default="495ad4f", help="throughput: the revision to compare with")
    ap.add_argument("--compare-old", action="store_true",
                    help="evaluate: also run --old's evaluate on each folder and compare")
    ap.add_argument("--repeats", type=int, default=1, help="throughput: runs of each tree")
    ap.add_argument("--photo-size", type=int, default=256, help="long side of each crop, px")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "basisnet-verify-bench"))
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    work = Path(args.work)
    pool, export_dir = photo_export(work, args.photo_size, max(args.sizes), min(args.sizes),
                                    args.preset)
    result = {**run_header(), "preset": args.preset, "specialist": "all", "quantize": "float32",
              "photos": f"tests/photo_fixture.py crops, long side {args.photo_size} px",
              "runs": {}}
    for n in args.sizes:
        folder = make_folder(pool, work / f"n{n}-{args.photo_size}", n)
        if args.what == "export":
            run = run_export(work, work / f"ckpt-{args.preset}", folder, n)
        elif args.what == "report":
            run = run_report(work, export_dir, folder, n)
        elif args.what == "evaluate":
            run = run_evaluate(work, folder, args.preset, args.old if args.compare_old else None)
        elif args.what == "calibrate-threshold":
            run = run_threshold(work, export_dir, folder, n)
        else:
            run = run_throughput(work, export_dir, folder, args.old, args.repeats)
        result["runs"][str(n)] = run
        print(n, run, flush=True)
    if args.what in ("report", "calibrate-threshold", "evaluate") and len(args.sizes) > 1:
        lo, hi = (result["runs"][str(n)]["peak_rss_mb"] for n in (min(args.sizes), max(args.sizes)))
        result["rss_ratio_large_over_small"] = round(hi / lo, 3)
    result["load_after"] = round(os.getloadavg()[0], 1)
    write_result(result, args.json_out)


if __name__ == "__main__":
    main()
