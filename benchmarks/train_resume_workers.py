"""Resume and two-worker training against one uninterrupted single-process run (issue #12).

Three runs of the same `basisnet-deploy train` command on digits (held-out accuracy from
each run's own `--json` report, the same held-out split for all, as the checkpoint records):

1. **uninterrupted**: one process, start to end;
2. **resumed**: the same command, sent SIGTERM in the middle of an epoch after about half
   of the epochs, then started again unchanged: it must end with the same number of
   completed epochs and an accuracy within 1 point of run 1;
3. **two workers**: the same command with `--strategy multi-worker`, two processes on
   127.0.0.1 configured by TF_CONFIG: it must complete and its accuracy must be within 2
   points of run 1.

    .venv/bin/python benchmarks/train_resume_workers.py --epochs 20 \
        --json benchmarks/results/train_resume_workers.json

``--skip-workers`` measures runs 1 and 2 only. ``resume.weights_identical`` says whether the
resumed checkpoint holds the uninterrupted one's weights byte for byte (training is
bit-reproducible across processes; docs/training.md). The per-epoch losses in the report
are the progress meter's moving average, which restarts when a run resumes: they can differ
between the two runs while the weights do not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-c", "import sys; from basisnet_deploy.cli import main; main(sys.argv[1:])"]
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def train_args(out: Path, epochs: int, extra=()) -> list[str]:
    return [*CLI, "train", "--dataset", "digits", "--preset", "demo", "--epochs", str(epochs),
            "--seed", "0", "--out", str(out), "--json", *extra]


def run_to_end(cmd: list[str], env=None) -> dict:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **QUIET, **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"train failed ({proc.returncode}): {proc.stderr[-1500:]}")
    report = json.loads(proc.stdout)
    report["wall_s"] = round(time.perf_counter() - start, 1)
    return report


def _saved_epochs(resume: Path) -> int:
    """Completed epochs in the resume state: the CheckpointManager's newest ckpt-N."""
    index = resume / "checkpoint"
    if not index.is_file():
        return 0
    line = index.read_text().splitlines()[0]  # model_checkpoint_path: "ckpt-N"
    return int(line.rsplit("-", 1)[1].rstrip('"'))


def interrupted_then_resumed(out: Path, epochs: int) -> dict:
    """SIGTERM mid-epoch once half the epochs are saved; then the same command again."""
    resume = out.with_name(f".{out.name}.resume")
    proc = subprocess.Popen(train_args(out, epochs), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **QUIET})
    half, times = max(1, epochs // 2), {}
    while proc.poll() is None and _saved_epochs(resume) < half:
        times.setdefault(_saved_epochs(resume), time.perf_counter())
        time.sleep(0.2)
    if proc.poll() is not None:
        raise SystemExit("the run ended before it could be interrupted: use more --epochs")
    # Half an epoch after the save: the middle of the next epoch.
    epoch_s = (time.perf_counter() - times.get(1, times[0])) / max(1, half - 1)
    time.sleep(epoch_s / 2)
    stopped_at = _saved_epochs(resume)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    first = {"exit_code": proc.returncode, "saved_epochs": stopped_at,
             "message": next((ln for ln in err.splitlines() if ln.startswith("Error:")), None)}
    again = run_to_end(train_args(out, epochs))
    return {"interrupted": first, "resumed": again}


def two_workers(work: Path, epochs: int) -> list[dict]:
    from basisnet_deploy.training.distribute import local_cluster

    procs = []
    for index, tf_config in enumerate(local_cluster(2)):
        env = {**os.environ, **QUIET, "TF_CONFIG": tf_config}
        cmd = train_args(work / f"worker{index}", epochs, ["--strategy", "multi-worker"])
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=env))
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=7200)
        if p.returncode != 0:
            raise SystemExit(f"worker failed ({p.returncode}): {err[-1500:]}")
        reports.append(json.loads(out))
    return reports


def _same_weights(a: Path, b: Path) -> bool:
    """Whether two checkpoints hold the same weight bytes, every tensor."""
    import numpy as np

    from basisnet_deploy.model import checkpoint

    net_a, _ = checkpoint.load(a)
    net_b, _ = checkpoint.load(b)
    return len(net_a.weights) == len(net_b.weights) and all(
        np.array_equal(x.numpy(), y.numpy()) for x, y in zip(net_a.weights, net_b.weights))


def _top1(report: dict) -> float:
    return report["held_out"]["specialist_top1"]


def _completed_epochs(report: dict) -> int:
    """Epochs done before this process (resumed from) plus the ones it ran itself."""
    return report["resumed_from_epoch"] + len(report["epochs"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--work", default=None, help="scratch folder (default: a new temp folder)")
    ap.add_argument("--json", dest="json_out", default=None)
    ap.add_argument("--skip-workers", action="store_true",
                    help="measure resume only (the two-worker run takes as long as the other two)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="basisnet-resume-"))
    result = {"command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
              "dataset": "digits", "preset": "demo", "epochs": args.epochs}
    base = run_to_end(train_args(work / "uninterrupted", args.epochs))
    print("uninterrupted", base["held_out"], flush=True)
    resumed = interrupted_then_resumed(work / "resumed", args.epochs)
    print("resumed", resumed["resumed"]["held_out"], flush=True)
    result.update({
        "uninterrupted": base, "interrupted_then_resumed": resumed,
        "resume": {"completed_epochs": _completed_epochs(resumed["resumed"]),
                   "uninterrupted_epochs": _completed_epochs(base),
                   "resumed_from_epoch": resumed["resumed"]["resumed_from_epoch"],
                   "top1_points_apart": round(100 * abs(_top1(resumed["resumed"]) - _top1(base)), 2),
                   "weights_identical": _same_weights(work / "uninterrupted", work / "resumed"),
                   "target_points": 1.0}})
    if not args.skip_workers:
        chief, other = two_workers(work, args.epochs)
        print("two workers", chief["held_out"], flush=True)
        result.update({"two_workers": [chief, other], "multi_worker": {
            "top1_points_apart": round(100 * abs(_top1(chief) - _top1(base)), 2),
            "workers_agree": chief["held_out"] == other["held_out"], "target_points": 2.0}})
    text = json.dumps(result, indent=2)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    print(json.dumps({k: result[k] for k in ("resume", "multi_worker") if k in result}, indent=2))


if __name__ == "__main__":
    main()
