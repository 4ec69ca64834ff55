"""Byte flips in a .tflite's structure (not its weight data): how often LiteRT crashes, and how
often the flatbuffer walk (basisnet_deploy.artifacts.model_check) refuses the bytes first.

Each trial flips 1-4 random bytes outside the model's buffer data (offsets, vtables, indices,
shapes, quantization), then loads the bytes in LiteRT's interpreter, allocates and invokes once,
in its own subprocess, so a segfault is counted rather than fatal.

    python benchmarks/fuzz_flatbuffer.py MODEL.tflite --trials 200 --out benchmarks/results/fuzz_flatbuffer.json
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

LOAD = """
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter
try:
    it = Interpreter(model_content=open(sys.argv[1], 'rb').read())
    it.allocate_tensors()
    for d in it.get_input_details():
        it.set_tensor(d['index'], np.zeros(d['shape'], d['dtype']))
    it.invoke()
except Exception as e:
    sys.exit(2)
"""


def data_ranges(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges of every buffer's data (the weights), from the clean model."""
    from basisnet_deploy.artifacts import model_check as mc

    r = mc._Reader(data)
    model = r.table(r.unpack("<I", 0))
    out = []
    for b in model.tables(4):
        start, n = b.vector(0, 1)
        if n:
            out.append((start, start + n))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from basisnet_deploy.artifacts.model_check import ModelCheckError, check_tflite

    clean = Path(args.model).read_bytes()
    weights = data_ranges(clean)
    structural = [i for i in range(len(clean)) if not any(a <= i < b for a, b in weights)]
    rng = random.Random(args.seed)
    counts = {"trials": 0, "crash_without_check": 0, "refused_by_litert": 0, "ran": 0,
              "refused_by_check": 0, "crash_after_check_passed": 0,
              "litert_refused_check_passed": 0, "check_refused_litert_ran": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.trials):
            b = bytearray(clean)
            for _ in range(rng.randint(1, 4)):
                b[rng.choice(structural)] ^= 1 << rng.randrange(8)
            path = Path(tmp) / "m.tflite"
            path.write_bytes(bytes(b))
            code = subprocess.run([sys.executable, "-c", LOAD, str(path)], capture_output=True,
                                  timeout=120).returncode
            try:
                check_tflite(bytes(b), path)
                passed = True
            except ModelCheckError:
                passed = False
            counts["trials"] += 1
            crashed = code not in (0, 2)
            counts["crash_without_check"] += crashed
            counts["refused_by_litert"] += code == 2
            counts["ran"] += code == 0
            counts["refused_by_check"] += not passed
            counts["crash_after_check_passed"] += crashed and passed
            counts["litert_refused_check_passed"] += code == 2 and passed
            counts["check_refused_litert_ran"] += code == 0 and not passed
    report = {"command": " ".join(sys.argv), "model": Path(args.model).name,
              "structural_bytes": len(structural), "file_bytes": len(clean), **counts}
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
