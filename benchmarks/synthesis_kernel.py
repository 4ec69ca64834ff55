"""Issue 11: fused synthesis kernel and compact int8 bases at full size.

Model: the full-size int8 TFLite export of export_full_size.py (MV3-L 1.0x224 specialist,
K=16, L8-L15: 24 patched layers, 19.4M basis elements), random init with BN statistics set
from real images. Reused from --work when it is there (export_full_size.py leaves it), else
exported here (presynth only). Compact bases are written with compact_bases.write, the
function export calls, when the export predates them.

Per-frame-changing coefficients (a new Dirichlet draw every call, so every layer is
re-synthesized), 1 thread, median of --runs calls after --warmup, the implementations called
round-robin (the machine is shared; min, p90 and the median of this thread's CPU time are
kept next to each wall-clock median). Also: interpreter
re-creation from the patched buffer (ai_edge_litert, XNNPACK), the stale-weight check, and
the error compact bases introduce against float32 bases. Writes
benchmarks/results/synthesis_kernel.json.

    .venv/bin/python benchmarks/synthesis_kernel.py [--runs 100] [--warmup 10]
        [--int8-recipe full-16x8 | --export DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from basisnet_deploy.artifacts import compact_bases
from basisnet_deploy.artifacts.manifest import Role, load_manifest
from basisnet_deploy.artifacts.fast_synthesis import FastSynthesizer, compiled_available
from basisnet_deploy.artifacts.synthesis import load_presynth, mix, synthesize

OUT = Path(__file__).parent / "results" / "synthesis_kernel.json"


def _export(work: Path, calibration_size: int, recipe: str) -> Path:
    """The full-size int8 TFLite export directory of ``recipe`` (reused when present). For
    timing only: a tuning recipe's weight tuning is skipped (the random model has nothing to
    keep, and the tuning does not change the template's layout)."""
    directory = work / ("tflite-int8" if recipe == "full" else f"tflite-{recipe}")
    if (directory / "manifest.json").is_file():
        return directory
    from export_full_size import _normalize

    from basisnet_deploy.model import checkpoint
    from basisnet_deploy.model.config import ArchConfig, BasisNetConfig
    from basisnet_deploy.data import Preprocessing
    from basisnet_deploy.export.pipeline import ExportOptions, export
    from basisnet_deploy.model.network import BasisNet

    arch = ArchConfig()  # the paper's BasisNet-MV3 preset
    net = BasisNet(arch)
    _normalize(net, arch)
    cfg = BasisNetConfig(arch, Preprocessing(resize="squash"), tuple(f"c{i}" for i in range(1000)),
                         {"note": "random init, for timing only"})
    ckpt = checkpoint.save(work / "ckpt", net, cfg)
    export(ckpt, directory, ExportOptions(min_agreement=0.0, target="tflite", calibration="digits",
                                          calibration_size=calibration_size, specialist="presynth",
                                          verify_images=8, images="digits", int8_recipe=recipe,
                                          tuning_steps=None if recipe == "full" else 0))
    return directory


def _load(directory: Path):
    """(presynth, compact arrays, where the compact file came from)."""
    entry = load_manifest(directory).artifacts[Role.SPECIALIST_PRESYNTH]
    ps = load_presynth(directory, entry)
    if (directory / entry.presynth.bases_int8).is_file():
        return ps, compact_bases.load(directory / entry.presynth.bases_int8, ps.table), "export"
    path = compact_bases.write(directory, ps.bases, ps.table)
    return ps, compact_bases.load(path, ps.table), "written by this benchmark (export predates it)"


def interleaved_ms(fns: dict, coefficients, warmup: int, runs: int) -> dict:
    """{name: {median, min, p90, cpu_median}} in ms of each fns[name](c), called round-robin:
    run i calls every function once with coefficient set i, so load from other processes on
    this shared machine falls on all of them alike. cpu_median is this thread's CPU time
    (time.thread_time), which time spent descheduled does not inflate."""
    wall, cpu = {name: [] for name in fns}, {name: [] for name in fns}
    for i in range(warmup + runs):
        c = coefficients[i % len(coefficients)]
        for name, fn in fns.items():
            t, u = time.perf_counter(), time.thread_time()
            fn(c)
            if i >= warmup:
                wall[name].append((time.perf_counter() - t) * 1e3)
                cpu[name].append((time.thread_time() - u) * 1e3)
    out = {}
    for name, ts in wall.items():
        ts.sort()
        out[name] = {"median": round(statistics.median(ts), 3), "min": round(ts[0], 3),
                     "p90": round(ts[int(0.9 * (len(ts) - 1))], 3),
                     "cpu_median": round(statistics.median(cpu[name]), 3)}
    return out


def _frames(fn, coefficients):
    """fn(c) with a different coefficient set on every call."""
    it = iter(range(10**9))
    return lambda: fn(coefficients[next(it) % len(coefficients)])


def _timings(ps, compact, coefficients, warmup: int, runs: int) -> tuple[dict, dict]:
    """Per-synthesis times of each implementation, and whether their bytes agree."""
    fast = {(src, kernel): FastSynthesizer(ps.template, ps.table, kernel=kernel,
                                           **({"compact": compact} if src == "int8" else {"bases": ps.bases}))
            for src in ("float32", "int8")
            for kernel in (("numpy", "compiled") if compiled_available() else ("numpy",))}
    q8 = [compact[p.layer + "/q8"] for p in ps.table]
    fns = {"reference_synthesize_float32_bases": lambda c: synthesize(ps.template, ps.table, ps.bases, c),
           **{f"{kernel}_{src}_bases": f.synthesize for (src, kernel), f in fast.items()},
           # the floor of any int8-bases synthesis: one SIMD pass over the 19.4 MB (NumPy max)
           "read_int8_bases_once": lambda c: [q.max() for q in q8]}
    ms = interleaved_ms(fns, coefficients, warmup, runs)
    assert all(f.layers_done == len(ps.table) for f in fast.values())  # every layer, every call
    ms.update(interleaved_ms({"reference_synthesize_int8_bases": lambda c: compact_bases.synthesize_reference(
        ps.template, ps.table, compact, c)}, coefficients, 2, max(10, runs // 5)))
    if compiled_available():
        same = fast["int8", "compiled"]
        ms.update(interleaved_ms({"compiled_int8_bases_coefficients_unchanged":
                                  lambda c: same.synthesize(coefficients[0])}, coefficients, warmup, runs))
        assert same.layers_done == 0
    exact = {}
    for c in coefficients[:3]:
        refs = {"float32": synthesize(ps.template, ps.table, ps.bases, c),
                "int8": compact_bases.synthesize_reference(ps.template, ps.table, compact, c)}
        for (src, kernel), f in fast.items():
            key = f"{kernel}_{src}_bases_equals_" + ("synthesize" if src == "float32" else "synthesize_reference")
            exact[key] = exact.get(key, True) and bytes(f.synthesize(c)) == refs[src]
    return ms, exact


def _compact_error(ps, compact, coefficients) -> dict:
    """Compact against float32 bases: bases, synthesized float kernels, int8 kernel bytes."""
    deq = compact_bases.dequantize(compact, ps.table)  # q8 * scales: the bases as stored
    basis_rel = max(float(np.max(np.abs(deq[p.layer] - ps.bases[p.layer])) / np.max(np.abs(ps.bases[p.layer])))
                    for p in ps.table)
    w_abs = w_rel = w_steps = 0.0
    hist = {"0": 0, "1": 0, "2": 0, ">2": 0}
    scale_rel = 0.0
    for c in coefficients:
        for p in ps.table:
            wf, wc = mix(ps.bases[p.layer], c[p.slot]), compact_bases.mixed_kernel(compact, p, c[p.slot])
            other = tuple(i for i in range(wf.ndim) if i != p.channel_axis)
            ch_max = np.max(np.abs(wf), axis=other, keepdims=True)
            err = np.abs(wc - wf)
            w_abs = max(w_abs, float(err.max()))
            w_rel = max(w_rel, float(err.max() / np.abs(wf).max()))
            w_steps = max(w_steps, float(np.max(err / (ch_max / 127))))  # in output int8 steps
        a = _kernels(synthesize(ps.template, ps.table, ps.bases, c), ps.table)
        b = _kernels(compact_bases.synthesize_reference(ps.template, ps.table, compact, c), ps.table)
        d = np.abs(a[0] - b[0])
        for key, n in (("0", (d == 0).sum()), ("1", (d == 1).sum()), ("2", (d == 2).sum()), (">2", (d > 2).sum())):
            hist[key] += int(n)
        scale_rel = max(scale_rel, float(np.max(np.abs(b[1] - a[1]) / a[1])))
    total = sum(hist.values())
    return {"coefficient_sets": len(coefficients),
            "bases_max_abs_error_over_layer_max": basis_rel,
            "synthesized_kernel_max_abs_error": w_abs,
            "synthesized_kernel_max_abs_error_over_layer_max": w_rel,
            "synthesized_kernel_max_abs_error_in_output_int8_steps": w_steps,
            "int8_kernel_values_compared": total,
            "int8_kernel_abs_difference_histogram": hist,
            "int8_kernel_fraction_differing": (total - hist["0"]) / total,
            "weight_scale_max_relative_difference": scale_rel}


def _kernels(model: bytes, table) -> tuple[np.ndarray, np.ndarray]:
    """All patched int8 kernel values (as int) and weight scales of a synthesized model."""
    q = [np.frombuffer(model, np.int8, int(np.prod(p.shape)), p.weight_offset) for p in table]
    s = [np.frombuffer(model, "<f4", p.n_scales, p.scale_offset) for p in table]
    return np.concatenate(q).astype(np.int32), np.concatenate(s)


def _interpreter(ps, compact, coefficients, warmup: int, runs: int) -> dict:
    """Re-creation cost from the patched buffer, and the stale-weight check (XNNPACK)."""
    from basisnet_deploy.runtime.sessions import LiteRTSession

    fast = FastSynthesizer(ps.template, ps.table, compact=compact)
    from ai_edge_litert.interpreter import Interpreter

    shape = Interpreter(model_content=bytes(ps.template)).get_input_details()[0]["shape"]
    x = np.random.default_rng(1).random(tuple(shape), np.float32) * 2 - 1
    fast.synthesize(coefficients[0])
    session = LiteRTSession(fast.buffer)
    ms = interleaved_ms({
        "copy_buffer_to_bytes": lambda c: bytes(fast.buffer),
        # LiteRTSession copies the bytearray to bytes (the interpreter takes bytes only, and
        # holds on to them: it must not see later in-place patches).
        "recreate_interpreter_from_buffer": lambda c: LiteRTSession(fast.buffer),
        "specialist_invoke": lambda c: session.run({"image": x}),
        f"{fast.kernel}_int8_bases_synthesize_plus_recreate": lambda c: LiteRTSession(fast.synthesize(c)),
    }, coefficients, warmup, runs)
    outs = []
    for c in coefficients[:2]:  # two different coefficient sets, one buffer patched in place
        outs.append(LiteRTSession(fast.synthesize(c)).run({"image": x})["logits"])
    fresh = LiteRTSession(compact_bases.synthesize_reference(ps.template, ps.table, compact, coefficients[1]))
    fresh = fresh.run({"image": x})["logits"]
    ref = LiteRTSession(synthesize(ps.template, ps.table, ps.bases, coefficients[1])).run({"image": x})["logits"]
    check = {"resynthesis_changes_output": bool(not np.array_equal(outs[0], outs[1])),
             "in_place_output_equals_fresh_reference_model": bool(np.array_equal(outs[1], fresh)),
             "logits_max_abs_difference_compact_vs_float32_bases": float(np.max(np.abs(outs[1] - ref))),
             "logits_max_abs_float32_bases": float(np.max(np.abs(ref))),
             "top1_same_compact_vs_float32_bases": bool(np.argmax(outs[1]) == np.argmax(ref))}
    return {"ms": ms, "check": check}


def main():
    from _bench_utils import recorded

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--error-sets", type=int, default=8, help="coefficient sets for the compact error")
    ap.add_argument("--calibration-size", type=int, default=100)
    ap.add_argument("--work", default="runs/bench-full", help="where export_full_size.py keeps its exports")
    ap.add_argument("--int8-recipe", default="full", choices=("full", "full-16x8"),
                    help="the template's recipe: full (int8 activations, int32 biases) or "
                         "full-16x8 (int16 activations, int64 biases; the random-init network's "
                         "full-size template calibrates to ranges LiteRT cannot run, and export "
                         "refuses it: time a trained export's with --export)")
    ap.add_argument("--export", default=None,
                    help="time this export's template instead of the full-size one (--work, --int8-recipe "
                         "and --calibration-size then unused)")
    ap.add_argument("--json", default=str(OUT))
    args = ap.parse_args()
    directory = (Path(args.export) if args.export
                 else _export(Path(args.work), args.calibration_size, args.int8_recipe))
    ps, compact, compact_source = _load(directory)
    k = compact[ps.table[0].layer + "/q8"].shape[0]
    rows = max(p.slot for p in ps.table) + 1
    coefficients = np.random.default_rng(0).dirichlet(np.ones(k), size=(64, rows)).astype(np.float32)
    load_before = os.getloadavg()
    ms, exact = _timings(ps, compact, coefficients, args.warmup, args.runs)
    interp = _interpreter(ps, compact, coefficients, args.warmup, args.runs)
    load_after = os.getloadavg()
    elements = sum(int(np.prod(ps.bases[p.layer].shape)) for p in ps.table)
    results = {
        "model": (f"the template of {directory}" if args.export else
                  "BasisNet-MV3 specialist (MV3-L 1.0x224), K=16, L8-L15, int8 TFLite template, random init"),
        "int8_recipe": load_manifest(directory).to_json().get("int8_recipe", {}).get("name"),
        "bias_dtypes": sorted({p.bias_dtype for p in ps.table}),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "export": str(directory),
        "compact_bases": compact_source, "patched_layers": len(ps.table), "basis_elements": elements,
        "bytes": {"float32_bases": elements * 4, "int8_bases": elements,
                  "template": len(ps.template)},
        "compiled_kernel": compiled_available(), "runs": args.runs, "warmup": args.warmup,
        "coefficients": "a different Dirichlet(1) draw [L, K] every call: every layer re-synthesized",
        "load_average_1_5_15min_before_and_after_timing": [load_before, load_after],
        "latency_ms_median": {k: v["median"] for k, v in {**ms, **interp["ms"]}.items()},
        "latency_ms_min_p90": {k: [v["min"], v["p90"]] for k, v in {**ms, **interp["ms"]}.items()},
        "thread_cpu_ms_median": {k: v["cpu_median"] for k, v in {**ms, **interp["ms"]}.items()},
        "exact": exact, "interpreter_check": interp["check"],
        "compact_error": _compact_error(ps, compact, coefficients[:args.error_sets]),
        "target_ms_one_synthesis": 2.0,
        "recorded": recorded(),
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
