"""Feed corrupted artifacts to every command that loads an export; count crashes and tracebacks.

For each type (``.tflite``, ``.onnx``, bases ``.npz``, patch table) N corrupted copies of a
clean tiny export are made: random byte flips, truncation, random spans, whole random files,
and for the patch table and bases also structured damage (offsets moved, shifted onto each
other, wrong types, arrays of the wrong shape). Two manifest modes:

- ``stale``: the manifest is left as exported, so the sha256 check must refuse every case;
- ``forged``: the manifest's sha256 (and size) are rewritten to match the corrupted file, as
  an attacker could, so the structural checks (flatbuffer walk, onnx.checker, patch-table
  validation) are what stands between the bytes and the runtime.

Each command runs every case in ONE worker process (``python fuzz_artifacts.py --worker``)
through ``basisnet_deploy.cli.main``; a case that kills the worker (segfault) is counted as a
crash and the worker restarts after it. Outcomes: exit 0 (corruption harmless, e.g. a weight
byte), exit 2 (refused with one ``Error:`` line), crash, traceback (anything else).

    python benchmarks/fuzz_artifacts.py --per-type 200 --out benchmarks/results/fuzz_artifacts.json
    python benchmarks/fuzz_artifacts.py --per-type 200 --no-model-check   # the baseline
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TYPES = ("tflite", "onnx", "npz", "patch_table")
COMMANDS = {  # command -> argv after the export directory; {out} is a scratch directory
    "check": ["check", "{dir}"],
    "predict": ["predict", "{dir}", "{image}", "--delegate", "cpu"],
    "bench": ["bench", "{dir}", "--frames", "2", "--warmup", "0", "--runner", "sequential",
              "--delegate", "cpu"],
    "android-assets": ["android-assets", "{dir}", "--out", "{out}"],
    "verify": ["verify", "{dir}", "--limit", "2"],
}


def make_exports(work: Path) -> dict[str, Path]:
    """A tiny random-init checkpoint exported to TFLite int8 and ONNX float (cached in work)."""
    done = {t: work / f"export-{t}" for t in ("tflite", "onnx")}
    if all((d / "manifest.json").is_file() for d in done.values()):
        return done
    sys.path.insert(0, str(ROOT / "tests"))
    import conftest  # noqa: E402  (TINY and the FAST export options)
    import keras

    from basisnet_deploy.data import Preprocessing
    from basisnet_deploy.model import checkpoint
    from basisnet_deploy.model.config import BasisNetConfig
    from basisnet_deploy.model.network import BasisNet

    keras.utils.set_random_seed(0)
    net = BasisNet(conftest.TINY)
    cfg = BasisNetConfig(conftest.TINY, Preprocessing(resize="squash"), tuple("0123456789"),
                         {"dataset": "digits", "settings": {"held_out": 0.2, "seed": 0}})
    ckpt = checkpoint.save(work / "ckpt", net, cfg)
    conftest.export(ckpt, done["tflite"], target="tflite", calibration="digits", **conftest.FAST)
    conftest.export(ckpt, done["onnx"], target="onnx", **conftest.FAST)
    return done


def corrupt(data: bytes, rng: random.Random, text: bool) -> bytes:
    """One random corruption of ``data``."""
    kind = rng.choice(["flip", "flip", "flip", "truncate", "span", "random"] + ["json"] * 3 * text)
    b = bytearray(data)
    if kind == "flip":
        for _ in range(rng.randint(1, 16)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        del b[rng.randrange(len(b)):]
    elif kind == "span":
        at = rng.randrange(len(b))
        b[at:at + rng.randint(1, 64)] = rng.randbytes(rng.randint(1, 64))
    elif kind == "random":
        b = bytearray(rng.randbytes(len(b)))
    else:
        return _damage_table(json.loads(data), rng).encode()
    return bytes(b)


def _damage_table(table: list, rng: random.Random) -> str:
    p = rng.choice(table)
    key = rng.choice(["weight_offset", "scale_offset", "bias_offset", "bias_scale_offset", "slot",
                      "shape", "dtype", "kind", "axis", "input_scale", "layer", "per_tensor"])
    other = rng.choice(table)
    p[key] = rng.choice([-7, 10**12, rng.randrange(1 << 20), "x", None, [1, 2], 2.5,
                         other.get(key), other.get("weight_offset")])
    if rng.random() < 0.2:
        p.pop(rng.choice(list(p)))
    return json.dumps(rng.choice([table, table, {"patches": table}]))


def _damage_npz(data: bytes, rng: random.Random) -> bytes:
    import numpy as np

    with np.load(io.BytesIO(data)) as npz:
        arrays = {k: npz[k] for k in npz.files}
    name = rng.choice(sorted(arrays))
    choice = rng.randrange(4)
    if choice == 0:
        arrays[name] = arrays[name].reshape(-1)[: max(1, arrays[name].size // 2)]
    elif choice == 1:
        arrays[name] = arrays[name].astype(np.int64)
    elif choice == 2:
        arrays[name] = np.full_like(arrays[name], np.nan)
    else:
        del arrays[name]
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def make_cases(clean: dict[str, Path], kind: str, n: int, forged: bool, work: Path, seed: int) -> list[Path]:
    """``n`` export directories, each with one file of type ``kind`` corrupted."""
    rng = random.Random(f"{seed}-{kind}-{forged}")
    src = clean["onnx" if kind == "onnx" else "tflite"]
    manifest = json.loads((src / "manifest.json").read_text())
    cases = []
    for i in range(n):
        case = work / f"{kind}-{'forged' if forged else 'stale'}-{i:04d}"
        shutil.rmtree(case, ignore_errors=True)
        shutil.copytree(src, case, copy_function=os.link)  # hard links: unlink before writing
        m = json.loads(json.dumps(manifest))
        entry, field, size = _target(m, kind, rng)
        path = case / entry[field]
        data = path.read_bytes()
        new = _damage_npz(data, rng) if kind == "npz" and rng.random() < 0.4 else \
            corrupt(data, rng, text=kind == "patch_table")
        path.unlink()
        path.write_bytes(new)
        if forged:
            entry[{"file": "sha256", "bases": "bases_sha256",
                   "patch_table": "patch_table_sha256"}[field]] = hashlib.sha256(new).hexdigest()
            if size:
                entry["bytes"] = len(new)
            (case / "manifest.json").unlink()
            (case / "manifest.json").write_text(json.dumps(m))
        cases.append(case)
    return cases


def _target(m: dict, kind: str, rng: random.Random):
    arts = m["artifacts"]
    if kind in ("tflite", "onnx"):
        return arts[rng.choice(sorted(arts))], "file", True
    return arts["specialist_presynth"], {"npz": "bases", "patch_table": "patch_table"}[kind], False


def worker(argv_template: list[str], cases: list[str], image: str, no_check: bool) -> None:
    """Run one command on every case in this process; print one JSON line per case."""
    import os

    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if no_check:
        import basisnet_deploy.artifacts.model_check as mc
        mc.check_model_bytes = lambda data, path: None
    from basisnet_deploy.cli import main

    for case in cases:
        print(json.dumps({"case": case, "started": True}), flush=True)
        argv = [a.format(dir=case, image=image, out=case + "-assets") for a in argv_template]
        err = io.StringIO()
        code, traceback = None, False
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                main(argv)
            except SystemExit as e:
                code = e.code
            except BaseException as e:  # noqa: BLE001 - what the fuzz looks for
                traceback = f"{type(e).__name__}: {e}"[:300]
        lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("Error:")]
        print(json.dumps({"case": case, "code": code, "traceback": traceback,
                          "error": lines[0][:300] if lines else None}), flush=True)


def run_command(name: str, cases: list[Path], image: str, no_check: bool) -> list[dict]:
    """Every case through ``name`` in as few worker processes as crashes allow."""
    results, todo = [], [str(c) for c in cases]
    while todo:
        cmd = [sys.executable, __file__, "--worker", json.dumps(COMMANDS[name]), "--image", image]
        cmd += ["--no-model-check"] if no_check else []
        proc = subprocess.run(cmd, input="\n".join(todo), capture_output=True, text=True)
        done = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
        finished = [d for d in done if "started" not in d]
        results += [{**d, "command": name} for d in finished]
        if proc.returncode == 0 and len(finished) == len(todo):
            break
        if len(finished) == len(todo):  # every case answered, then the process died at exit
            results.append({"case": todo[-1], "command": name, "code": proc.returncode,
                            "crash": True, "at_exit": True, "stderr": proc.stderr[-300:]})
            break
        crashed = todo[len(finished)]
        results.append({"case": crashed, "command": name, "code": proc.returncode, "crash": True,
                        "stderr": proc.stderr[-300:]})
        todo = todo[len(finished) + 1:]
    return results


def summarize(results: list[dict]) -> dict:
    out = {}
    for r in results:
        key = f"{r['command']}/{Path(r['case']).name.rsplit('-', 1)[0]}"
        s = out.setdefault(key, {"cases": 0, "exit0": 0, "exit2": 0, "crash": 0, "traceback": 0,
                                 "other": 0})
        s["cases"] += 1
        if r.get("crash"):
            s["crash"] += 1
        elif r.get("traceback"):
            s["traceback"] += 1
        elif r["code"] in (0, 2):
            s[f"exit{r['code']}"] += 1
        else:
            s["other"] += 1
    return out


def fuzz(work: Path, per_type: int, no_check: bool, modes=("stale", "forged"),
         commands=tuple(COMMANDS), types=TYPES) -> tuple[dict, list[dict]]:
    work.mkdir(parents=True, exist_ok=True)
    clean = make_exports(work)
    image = str(work / "digit.png")
    _digit_png(image)
    results = []
    for kind in types:
        for mode in modes:
            cases = make_cases(clean, kind, per_type, mode == "forged", work / "cases", seed=0)
            for name in commands:
                if name == "android-assets" and kind == "onnx":
                    continue
                results += run_command(name, cases, image, no_check)
            for case in cases:
                shutil.rmtree(case, ignore_errors=True)
                shutil.rmtree(str(case) + "-assets", ignore_errors=True)
    return summarize(results), results


def _digit_png(path: str) -> None:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    Image.fromarray((load_digits().images[0] * 255 / 16).astype(np.uint8)).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-type", type=int, default=200)
    ap.add_argument("--work", default="/tmp/basisnet-fuzz")
    ap.add_argument("--no-model-check", action="store_true")
    ap.add_argument("--modes", default="stale,forged")
    ap.add_argument("--commands", default=",".join(COMMANDS))
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--image", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(json.loads(args.worker), sys.stdin.read().split(), args.image, args.no_model_check)
        return
    started = time.time()
    summary, results = fuzz(Path(args.work), args.per_type, args.no_model_check,
                            tuple(args.modes.split(",")), tuple(args.commands.split(",")),
                            types=tuple(args.types.split(",")))
    report = {"command": " ".join(sys.argv), "per_type": args.per_type,
              "model_check": not args.no_model_check, "seconds": round(time.time() - started),
              "summary": summary,
              "failures": [r for r in results if r.get("crash") or r.get("traceback")][:50]}
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
