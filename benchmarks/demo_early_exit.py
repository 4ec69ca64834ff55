"""Early exit on the `make demo` model: train the demo preset on digits, export it to TFLite
with the fidelity recipe (as `make demo` does), run `calibrate-threshold --max-drop 0.5` and
write its JSON result (threshold, exit rate, average MAdds, top-1 with and without exit) with the
machine, date and command. docs/benchmarks.md and README's "Performance at a glance" show it.

    .venv/bin/python benchmarks/demo_early_exit.py --work runs/demo-early-exit \
        --json benchmarks/results/demo_early_exit.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _bench_utils import write_result


def cli(*args: str) -> None:
    cmd = [str(Path(sys.executable).with_name("basisnet-deploy")), *args]
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="runs/demo-early-exit")
    p.add_argument("--max-drop", type=float, default=0.5)
    p.add_argument("--reuse", action="store_true", help="keep a checkpoint and export already in --work")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    work = Path(a.work)
    ckpt, export = work / "ckpt", work / "export-tflite"
    if not (a.reuse and ckpt.is_dir()):
        cli("train", "--dataset", "digits", "--preset", "demo", "--out", str(ckpt))
    if not (a.reuse and (export / "manifest.json").is_file()):
        cli("export", str(ckpt), "--target", "tflite", "--calibration", "digits",
            "--int8-recipe", "fidelity", "--verify-images", "359", "--out", str(export))
    out = work / "calibrate.json"
    cli("calibrate-threshold", str(export), "--dataset", "digits", "--max-drop", str(a.max_drop),
        "--json-out", str(out))
    result = json.loads(out.read_text())
    for key in ("manifest", "plot"):  # paths on the machine that ran it
        result.pop(key, None)
    write_result(result, a.json)


if __name__ == "__main__":
    main()
