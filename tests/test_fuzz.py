"""Corrupted artifacts never crash a command or print a traceback (benchmarks/fuzz_artifacts.py).

A small version of the benchmark: a few corrupted ``.tflite``, ``.onnx``, bases ``.npz`` and
patch tables per type, each command run over all of them in one worker process. With the
manifest as exported every case must be refused (exit 2, one ``Error:`` line); with the
checksums forged to match, a case may also run (exit 0: e.g. a flipped weight byte), but
never crash or raise.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fuzz_artifacts as fz  # noqa: E402

PER_TYPE = 6


@pytest.fixture(scope="module")
def cases(int8_tflite, float_onnx, tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    clean = {"tflite": int8_tflite[0], "onnx": float_onnx[0]}
    image = str(work / "digit.png")
    fz._digit_png(image)
    made = {mode: [c for kind in fz.TYPES
                   for c in fz.make_cases(clean, kind, PER_TYPE, mode == "forged", work, seed=1)]
            for mode in ("stale", "forged")}
    return made, image


@pytest.mark.parametrize("command", ["predict", "android-assets"])
def test_corrupted_artifacts_exit_2_or_run_never_crash(cases, command):
    made, image = cases
    for mode, allowed in (("stale", {2}), ("forged", {0, 2})):
        todo = [c for c in made[mode] if command != "android-assets" or not c.name.startswith("onnx")]
        results = fz.run_command(command, todo, image, no_check=False)
        assert len(results) == len(todo)
        bad = [r for r in results if r.get("crash") or r.get("traceback") or r["code"] not in allowed]
        assert not bad, bad[:3]
        if mode == "stale":
            assert all(r["error"] and "sha256 differs" in r["error"] for r in results), results[:3]
        else:  # the structural checks, not the checksum, refused these
            assert sum(r["code"] == 2 for r in results) >= len(results) // 3
