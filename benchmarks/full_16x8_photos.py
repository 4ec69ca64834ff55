"""The full-16x8 int8 recipe (``--int8-recipe full-16x8``) on held-out real photos, through
``basisnet-deploy export`` itself: for each (checkpoint, export seed, target) one export of the
lightweight model and the pre-synthesized specialist, calibrated and tuned on ``PHOTOS/train``,
verified by the export on 480 ``PHOTOS/heldout`` crops (tests/photo_fixture.py), one frame at a
time. Each run is

    .venv/bin/basisnet-deploy export CKPT --target T --calibration PHOTOS/train
        --images PHOTOS/heldout --verify-images 480 --int8-recipe full-16x8
        --specialist presynth --seed S --allow-low-agreement --out WORK/NAME --json

timed, its manifest (stdout) kept in WORK/NAME.json with the command line and wall seconds, so
that a rerun skips the runs already there (resume). Collected per run: LM agreement, accuracy
drop (float - int8, points), coefficient max abs error; the template isolated (float LM's
coefficients) and end to end (the int8 LM's): agreement, drop, logits max_rel; the weight
tuning kept/best_step/seconds per role; export seconds. The summary gives, per target, the
worst of each metric over all runs and whether it meets: agreement >= 99.5% (every artifact,
isolated and end to end), coefficient error <= 0.05, accuracy drop <= 0.5 point.

    .venv/bin/python benchmarks/full_16x8_photos.py --ckpt ckpt2=/tmp/fid/ckpt2
        --ckpt ckpt3=/tmp/fid/ckpt3 --photos /tmp/photos2 --work /tmp/f16/work
        [--seeds 0,1,2] [--targets tflite,onnx] [--only ckpt2:0:tflite,...]
        [--tuning-steps N] [--calibration-size N] [--summarize-only] [--json OUT] [--md OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / ".venv" / "bin" / "basisnet-deploy"

AGREEMENT_MIN = 99.5  # percent, every artifact, isolated and end to end
COEF_MAX = 0.05  # LM coefficients' max abs error
DROP_MAX = 0.5  # accuracy points (float - int8)
TUNING_MAX_S = 600  # the issue: fine-tuning at the demo preset under 10 minutes


def run_name(ckpt: str, seed: int, target: str) -> str:
    return f"{ckpt}_{target}_s{seed}"


def command(ckpt_dir: str, photos: str, target: str, seed: int, out: Path, args) -> list[str]:
    cmd = [str(CLI.relative_to(ROOT)), "export", ckpt_dir, "--target", target,
           "--calibration", str(Path(photos) / "train"), "--images", str(Path(photos) / "heldout"),
           "--verify-images", str(args.verify_images), "--int8-recipe", "full-16x8",
           "--specialist", "presynth", "--seed", str(seed), "--allow-low-agreement",
           "--out", str(out), "--json"]
    if args.tuning_steps is not None:
        cmd[-1:-1] = ["--tuning-steps", str(args.tuning_steps)]
    if args.calibration_size is not None:
        cmd[-1:-1] = ["--calibration-size", str(args.calibration_size)]
    return cmd


def run_measured(cmd: list[str], stdout_path: Path, log_path: Path) -> tuple[int, float, float]:
    """Run ``cmd`` (stdout to a file, stderr to the log): exit code, wall seconds, and peak
    RSS in MiB from ``wait4``'s rusage (Linux: KiB), the largest of the export's own and those
    of the children it waited for (the GPU check's probe); not a sum."""
    t = time.perf_counter()
    with open(stdout_path, "w") as out, open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=log)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C during a long export: do not leave it running
            proc.kill()
            proc.wait()
            raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, round(time.perf_counter() - t, 1), round(usage.ru_maxrss / 1024, 1)


def export_once(ckpt: str, ckpt_dir: str, seed: int, target: str, args) -> dict:
    """One export (or its record from an earlier run, where WORK/NAME.json has one)."""
    work = Path(args.work)
    name = run_name(ckpt, seed, target)
    record_path = work / f"{name}.json"
    if record_path.exists():
        record = json.loads(record_path.read_text())
        if record.get("rc") == 0:
            print(f"{name}: already in {record_path}, skipped", flush=True)
            return record
    cmd = command(ckpt_dir, args.photos, target, seed, work / name, args)
    print(f"{name}: {shlex.join(cmd)}", flush=True)
    stdout_path = work / f"{name}.stdout"
    rc, seconds, peak_mb = run_measured(cmd, stdout_path, work / f"{name}.log")
    stdout = stdout_path.read_text()
    record = {"name": name, "checkpoint": ckpt, "seed": seed, "target": target,
              "command": shlex.join(cmd), "rc": rc, "wall_seconds": seconds,
              "peak_rss_mb": peak_mb}
    try:
        record["manifest"] = json.loads(stdout)
    except json.JSONDecodeError:
        record["stdout"] = stdout[-4000:]
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{name}: rc {rc} in {seconds} s, peak RSS {peak_mb} MB", flush=True)
    return record


def pct(x: float) -> float:
    return round(100 * x, 2)


def score(s: dict, images: int) -> dict:
    row = {"agreement": pct(s["top1_agreement"]),
           "disagree_frames": round((1 - s["top1_agreement"]) * images),
           "max_rel": round(s["logits"]["max_rel"], 4)}
    if s.get("accuracy") is not None:
        row.update(accuracy=pct(s["accuracy"]), float_accuracy=pct(s["float_accuracy"]),
                   drop=round(100 * (s["float_accuracy"] - s["accuracy"]), 2))
    if s.get("coefficients") is not None:
        row["coef_max_abs"] = round(s["coefficients"]["max_abs"], 4)
    if s.get("ties") is not None:  # exports whose verification records it
        row["ties"] = s["ties"]
    return row


def metrics(record: dict) -> dict:
    """The figures of one run, from its manifest."""
    m = record["manifest"]
    v = m["verification"]
    n = v["images"]
    sp = v["specialist_presynth"]
    tuning = {role: {k: t[k] for k in ("steps", "best_step", "kept", "seconds")}
              for role, t in (m.get("weight_tuning") or {}).items()}
    return {"name": record["name"], "checkpoint": record["checkpoint"], "seed": record["seed"],
            "target": record["target"], "images": n,
            "lightweight": score(v["lightweight"], n),
            "template_isolated": score(sp["isolated"], n),
            "template_end_to_end": score(sp["end_to_end"], n),
            "weight_tuning": tuning,
            "tuning_seconds_total": round(sum(t["seconds"] for t in tuning.values()), 1),
            "export_seconds": m.get("export_seconds"), "wall_seconds": record["wall_seconds"],
            "peak_rss_mb": record.get("peak_rss_mb"),
            "calibration_images": (m.get("calibration") or {}).get("used"),
            "agreement_gate_forced": (m.get("agreement_gate") or {}).get("forced")}


ARTIFACTS = ("lightweight", "template_isolated", "template_end_to_end")


def summary(rows: list[dict]) -> dict:
    """Per target: the worst value of each metric over its runs, and the targets met."""
    out = {}
    for target in sorted({r["target"] for r in rows}):
        rs = [r for r in rows if r["target"] == target]
        worst_agree = min((r[a]["agreement"], r["name"], a) for r in rs for a in ARTIFACTS)
        worst_drop = max((r[a]["drop"], r["name"], a) for r in rs for a in ARTIFACTS)
        worst_coef = max((r["lightweight"]["coef_max_abs"], r["name"]) for r in rs)
        worst_rel = {a: max(r[a]["max_rel"] for r in rs) for a in ARTIFACTS}
        per_artifact = {a: {"agreement_min": min(r[a]["agreement"] for r in rs),
                            "disagree_frames_max": max(r[a]["disagree_frames"] for r in rs),
                            "drop_max": max(r[a]["drop"] for r in rs),
                            "max_rel_max": worst_rel[a]} for a in ARTIFACTS}
        tuning = {role: max(r["weight_tuning"][role]["seconds"] for r in rs)
                  for role in rs[0]["weight_tuning"]}
        worst_tuning = max(r["tuning_seconds_total"] for r in rs)
        out[target] = {
            "runs": [r["name"] for r in rs],
            "per_artifact": per_artifact,
            "worst": {"agreement": {"value": worst_agree[0], "run": worst_agree[1], "artifact": worst_agree[2]},
                      "accuracy_drop": {"value": worst_drop[0], "run": worst_drop[1], "artifact": worst_drop[2]},
                      "coef_max_abs": {"value": worst_coef[0], "run": worst_coef[1]},
                      "tuning_seconds_per_role": tuning, "tuning_seconds_total": worst_tuning,
                      "export_seconds": max(r["export_seconds"] or 0 for r in rs)},
            "met": {f"agreement >= {AGREEMENT_MIN}%": worst_agree[0] >= AGREEMENT_MIN,
                    f"coef err <= {COEF_MAX}": worst_coef[0] <= COEF_MAX,
                    f"accuracy drop <= {DROP_MAX} pt": worst_drop[0] <= DROP_MAX,
                    f"tuning <= {TUNING_MAX_S} s": worst_tuning <= TUNING_MAX_S},
        }
    return out


def markdown(rows: list[dict], summ: dict, commands: list[str], argv: str, photos: str) -> str:
    lines = ["# full-16x8 on held-out photos (benchmarks/full_16x8_photos.py)", "",
             "Runner:", "", f"    {argv}", "",
             f"Each run (CKPT, T, S from the row; PHOTOS={photos}; WORK/NAME: CKPT_T_sS):", "",
             "    .venv/bin/basisnet-deploy export CKPT --target T --calibration PHOTOS/train \\",
             "        --images PHOTOS/heldout --verify-images 480 --int8-recipe full-16x8 \\",
             "        --specialist presynth --seed S --allow-low-agreement --out WORK/NAME --json", "",
             "(plus the runner's --tuning-steps and --calibration-size where it was given them: "
             "the commands as run are listed at the end)", "",
             "Agreement: top-1 with the float model on 480 held-out crops (frames that disagree in "
             "brackets); drop: float accuracy - int8 accuracy, points; template isolated: fed the "
             "float LM's coefficients, end to end: the int8 LM's. Tuning: kept (best step) and "
             "seconds per role, LM / template.", "",
             "| ckpt | target | seed | LM agreement | LM drop | LM coef max abs | template isolated agreement "
             "| isolated drop | isolated max_rel | end-to-end agreement | e2e drop | e2e max_rel "
             "| tuning LM / template | tuning s | export s | calibration images | peak RSS MB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def agr(s):
        return f"{s['agreement']:.2f}% ({s['disagree_frames']})"

    for r in rows:
        lm, iso, e2e = (r[a] for a in ARTIFACTS)
        t = r["weight_tuning"]
        kept = " / ".join(f"{t[k]['kept']} ({t[k]['best_step']})" for k in t)
        secs = " + ".join(f"{t[k]['seconds']:.0f}" for k in t)
        lines.append(f"| {r['checkpoint']} | {r['target']} | {r['seed']} | {agr(lm)} | {lm['drop']:.2f} "
                     f"| {lm['coef_max_abs']:.4f} | {agr(iso)} | {iso['drop']:.2f} | {iso['max_rel']:.4f} "
                     f"| {agr(e2e)} | {e2e['drop']:.2f} | {e2e['max_rel']:.4f} | {kept} | {secs} "
                     f"| {r['export_seconds']:.0f} | {r.get('calibration_images') or ''} "
                     f"| {r.get('peak_rss_mb') or 'not recorded'} |")
    lines += ["", "Worst over the runs of each target, and the targets:", "",
              "| target | runs | worst agreement | worst accuracy drop (pt) | worst coef max abs "
              "| worst tuning s (LM + template) | agreement >= 99.5% | coef <= 0.05 | drop <= 0.5 | tuning <= 600 s |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for target, s in summ.items():
        w, met = s["worst"], list(s["met"].values())
        yes = ["met" if m else "**not met**" for m in met]
        lines.append(f"| {target} | {len(s['runs'])} | {w['agreement']['value']:.2f}% ({w['agreement']['run']}, "
                     f"{w['agreement']['artifact']}) | {w['accuracy_drop']['value']:.2f} ({w['accuracy_drop']['run']}, "
                     f"{w['accuracy_drop']['artifact']}) | {w['coef_max_abs']['value']:.4f} ({w['coef_max_abs']['run']}) "
                     f"| {w['tuning_seconds_total']:.0f} | " + " | ".join(yes) + " |")
    lines += ["", "Commands as run:", ""] + [f"    {c}" for c in commands] + [""]
    return "\n".join(lines)


def parse_list(text: str, kind=str) -> list:
    return [kind(x) for x in text.split(",") if x]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", action="append", required=True, help="NAME=DIR (repeat)")
    ap.add_argument("--photos", required=True, help="fixture folder with train/ and heldout/")
    ap.add_argument("--work", required=True, help="export directories and per-run records (resume)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--targets", default="tflite,onnx")
    ap.add_argument("--only", default=None, help="NAME:SEED:TARGET,... in this order (else every combination)")
    ap.add_argument("--verify-images", type=int, default=480)
    ap.add_argument("--tuning-steps", type=int, default=None, help="default: export's (2000)")
    ap.add_argument("--calibration-size", type=int, default=None, help="default: export's (200)")
    ap.add_argument("--summarize-only", action="store_true", help="run nothing; summarize the records in WORK")
    ap.add_argument("--json", default=None)
    ap.add_argument("--md", default=None)
    args = ap.parse_args()
    ckpts = dict(c.split("=", 1) for c in args.ckpt)
    if args.only:
        plan = [(c, int(s), t) for c, s, t in (x.split(":") for x in parse_list(args.only))]
    else:
        plan = [(c, s, t) for t in parse_list(args.targets) for c in ckpts
                for s in parse_list(args.seeds, int)]
    Path(args.work).mkdir(parents=True, exist_ok=True)
    records = []
    for c, s, t in plan:
        if args.summarize_only:
            p = Path(args.work) / f"{run_name(c, s, t)}.json"
            if p.exists():
                records.append(json.loads(p.read_text()))
        else:
            records.append(export_once(c, ckpts[c], s, t, args))
    done = [r for r in records if r.get("rc") == 0 and "manifest" in r]
    rows = [metrics(r) for r in done]
    summ = summary(rows) if rows else {}
    argv = shlex.join([".venv/bin/python", "benchmarks/full_16x8_photos.py", *sys.argv[1:]])
    out = {"argv": argv, "thresholds": {"agreement_min_pct": AGREEMENT_MIN, "coef_max_abs": COEF_MAX,
                                        "accuracy_drop_max_pt": DROP_MAX, "tuning_max_s": TUNING_MAX_S},
           "commands": [{"name": r["name"], "command": r["command"], "rc": r["rc"],
                         "wall_seconds": r["wall_seconds"]} for r in records],
           "failed": [r["name"] for r in records if r not in done],
           "runs": rows, "summary": summ}
    print(json.dumps(summ, indent=1), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    if args.md and rows:
        Path(args.md).write_text(markdown(rows, summ, [r["command"] for r in done], argv, args.photos))


if __name__ == "__main__":
    main()
