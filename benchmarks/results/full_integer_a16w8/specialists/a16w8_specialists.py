"""A16W8 (int16 activations, int8 weights) specialists on held-out photos, isolated.

    .venv/bin/python benchmarks/results/full_integer_a16w8/specialists/a16w8_specialists.py \
        STAGES OUT.json      # STAGES: comma list of coef,templ_mean,templ_per_image,templ_tuned,onnx

coef: coefficient-input specialist, ai-edge-quantizer static_wi8_ai16, ranges from AEQ's default
calibration (moving average, 0.95) and from true min/max (per-image calibrate calls merged),
widened x1.5 / x2.
templ_*: the pre-synthesized template quantized A16W8 with FIXED ranges, scored per frame with
that frame's kernels: (a) synthesize() as-is on the quantized template if patch_table works,
(b) emulated patcher = synthesize() math with an int64 bias (patch16 below), (c) the float
template with the frame's kernels re-quantized by AEQ with the fixed ranges (subset).
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, "/work/main/benchmarks")
sys.path.insert(0, "/work/main")

import numpy as np  # noqa: E402

from fidelity_photos import Setup, run_coefficient, scores, session, reader  # noqa: E402

KEY = "serve"
OUT = {}


class QSession:
    """LiteRT session that quantizes float feeds onto int16/int8 inputs and dequantizes
    integer outputs. The product's LiteRTSession.cast only handles int8/uint8 inputs: an int16
    input gets float.astype(int16) (truncation: images in [-1, 1] become 0/+-1) and int16
    outputs come back raw, which is what the first runs here measured."""

    def __init__(self, model: bytes, suffix=".tflite"):
        from ai_edge_litert.interpreter import Interpreter
        self.it = Interpreter(model_content=bytes(model), num_threads=1)
        self.it.allocate_tensors()
        self.runner = self.it.get_signature_runner()
        self.ins = self.runner.get_input_details()
        self.outs = self.runner.get_output_details()

    def run(self, feeds):
        args = {}
        for k, v in feeds.items():
            d = self.ins[k]
            v = np.asarray(v, np.float32)
            if d["dtype"] != np.float32:
                sc, zp = d["quantization"]
                info = np.iinfo(d["dtype"])
                v = np.clip(np.round(v / sc + zp), info.min, info.max)
            args[k] = v.astype(d["dtype"]).reshape(d["shape"])
        out = self.runner(**args)
        res = {}
        for k, v in out.items():
            sc, zp = self.outs[k]["quantization"]
            res[k] = (v.astype(np.float32) - zp) * sc if v.dtype != np.float32 and sc else v
        return res


def qsession(model, suffix):
    if suffix == ".tflite":
        return QSession(model)
    from basisnet_deploy.runtime.sessions import open_session
    return open_session(Path("m" + suffix), model=model)


import fidelity_photos  # noqa: E402
fidelity_photos.session = qsession  # run_coefficient looks it up at call time


def save(path):
    Path(path).write_text(json.dumps(OUT, indent=1, default=str) + "\n")


def aeq():
    from ai_edge_quantizer import quantizer, recipe
    return quantizer, recipe


def merge(acc, r):
    for k, v in r.items():
        if k in acc:
            acc[k] = {"min": np.minimum(acc[k]["min"], v["min"]), "max": np.maximum(acc[k]["max"], v["max"])}
        else:
            acc[k] = {"min": np.array(v["min"]), "max": np.array(v["max"])}
    return acc


def minmax_calibration(float_bytes, feeds):
    """True min/max: one calibrate call per feed (AEQ's default update is a moving average)."""
    quantizer, recipe = aeq()
    qt = quantizer.Quantizer(float_bytes, recipe.static_wi8_ai16())
    acc = {}
    for f in feeds:
        merge(acc, qt.calibrate({KEY: [f]}))
    return acc


def widen(res, f):
    if f == 1:
        return res
    out = {}
    for k, v in res.items():
        lo, hi = np.asarray(v["min"]), np.asarray(v["max"])
        out[k] = {"min": np.where(lo < 0, lo * f, lo).astype(np.float32),
                  "max": np.where(hi > 0, hi * f, hi).astype(np.float32)}
    return out


def quantize(float_bytes, res):
    quantizer, recipe = aeq()
    qt = quantizer.Quantizer(float_bytes, recipe.static_wi8_ai16())
    return bytes(qt.quantize(res).quantized_model)


_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 7: "int16", 9: "int8"}


def fb_check(model: bytes) -> dict:
    """Op counts, activation dtypes between ops, weight and bias dtypes."""
    from ai_edge_litert import schema_py_generated as fb
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    m = fb.Model.GetRootAs(model, 0)
    g = m.Subgraphs(0)

    def is_const(t):
        b = m.Buffers(g.Tensors(t).Buffer())
        return b.DataLength() > 0 or b.Offset() > 1

    ops, acts, weights, biases, float_ops = Counter(), Counter(), Counter(), Counter(), Counter()
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        c = m.OperatorCodes(op.OpcodeIndex())
        name = names.get(max(c.BuiltinCode(), c.DeprecatedBuiltinCode()), "?")
        ops[name] += 1
        for j in range(op.InputsLength()):
            t = op.Inputs(j)
            if t < 0:
                continue
            ty = _TYPES.get(g.Tensors(t).Type(), str(g.Tensors(t).Type()))
            if is_const(t):
                if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL"):
                    (weights if j == 1 else biases if j == 2 else acts)[f"{name}[{j}]:{ty}"] += 1
                continue
            acts[f"{name}:in:{ty}"] += 1
            if ty == "float32" and name not in ("QUANTIZE",):
                float_ops[name] += 1
        for j in range(op.OutputsLength()):
            ty = _TYPES.get(g.Tensors(op.Outputs(j)).Type(), "?")
            acts[f"{name}:out:{ty}"] += 1
            if ty == "float32" and name not in ("DEQUANTIZE",):
                float_ops[name] += 1
    return {"ops": dict(ops), "activation_dtypes": dict(acts), "weights": dict(weights),
            "biases": dict(biases), "ops_with_float_activations": dict(float_ops), "bytes": len(model)}


def coef(s):
    from basisnet_deploy.converters import get_exporter
    quantizer, recipe = aeq()
    ex = get_exporter("tflite")
    fbytes = ex.convert(s._graphs[False]["specialist_coefficient"], "float32")
    row = OUT.setdefault("coefficient_tflite", {})
    row["float_tflite"] = run_coefficient(s, fbytes, ".tflite", {})["isolated"]
    t = time.perf_counter()
    default = quantizer.Quantizer(fbytes, recipe.static_wi8_ai16()).calibrate({KEY: s.coeff_feeds()})
    row["calib_default_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    mm = minmax_calibration(fbytes, s.coeff_feeds())
    row["calib_minmax_s"] = round(time.perf_counter() - t, 1)
    for cname, res in (("default_moving_avg", default), ("minmax", mm)):
        for f in (1, 1.5, 2):
            t = time.perf_counter()
            model = quantize(fbytes, widen(res, f))
            qs = time.perf_counter() - t
            r = run_coefficient(s, model, ".tflite", {})["isolated"]
            r.update(quantize_s=round(qs, 1), score_s=round(time.perf_counter() - t - qs, 1))
            if f == 1:
                r["flatbuffer"] = fb_check(model)
            row[f"{cname}_x{f}"] = r
            print("coef", cname, f, {k: v for k, v in r.items() if k != "flatbuffer"}, flush=True)


def coef_mixed(s, decomposed=False):
    """Diagnostic: the convs fed in-graph synthesized (int16 activation) kernels left float."""
    from basisnet_deploy.converters import get_exporter
    quantizer, recipe = aeq()
    fbytes = get_exporter("tflite").convert(s._graphs[decomposed]["specialist_coefficient"], "float32")
    mm = minmax_calibration(fbytes, s.coeff_feeds())
    row = OUT.setdefault("coefficient_tflite" + ("_decomposed_hs" if decomposed else ""), {})
    for f in (1, 2):
        t = time.perf_counter()
        qt = quantizer.Quantizer(fbytes, recipe.static_wi8_ai16())
        for opn in (recipe.TFLOperationName.CONV_2D, recipe.TFLOperationName.DEPTHWISE_CONV_2D):
            qt.update_quantization_recipe(regex=r".*sp_L(8|9|1[0-5])_(expand|depthwise|project)_1/.*",
                                          operation_name=opn, algorithm_key=recipe.AlgorithmName.NO_QUANTIZE)
        model = bytes(qt.quantize(widen(mm, f)).quantized_model)
        r = run_coefficient(s, model, ".tflite", {})["isolated"]
        r["seconds"] = round(time.perf_counter() - t, 1)
        r["flatbuffer"] = fb_check(model)
        row[f"minmax_x{f}_dynamic_kernel_convs_float"] = r
        print("coef mixed", f, {k: v for k, v in r.items() if k != "flatbuffer"}, r["flatbuffer"]["ops_with_float_activations"], flush=True)


# ---------------------------------------------------------------- template
def float_template(s, graph):
    from basisnet_deploy.converters import get_exporter
    from basisnet_deploy.export.pipeline import fold_bases
    ex = get_exporter("tflite")
    ftempl = ex.convert(graph, "float32")
    folded = fold_bases(s.net.specialist)
    table, bases = ex.patch_table(ftempl, folded, s.baked, "float32")
    return ex, ftempl, folded, table, bases


def per_image_calibration(ftempl, table, bases, feeds, coeffs):
    from basisnet_deploy.artifacts.synthesis import synthesize
    quantizer, recipe = aeq()
    acc = {}
    for f, c in zip(feeds, coeffs):
        qt = quantizer.Quantizer(synthesize(ftempl, table, bases, c), recipe.static_wi8_ai16())
        merge(acc, qt.calibrate({KEY: [f]}))
    return acc


def patch16(template: bytes, patches, bases, coefficients) -> bytes:
    """synthesize() with the bias written as int64 (TFLite's int16x8 conv bias), no int32 floor."""
    from basisnet_deploy.artifacts.synthesis import mix, quantize_kernel, _splice
    coefficients = np.asarray(coefficients, np.float32)
    writes = []
    for p in patches:
        w = mix(bases[p.layer], coefficients[p.slot])
        q, scale = quantize_kernel(w, p, None)
        writes += [(p.weight_offset, q.tobytes()), (p.scale_offset, scale.astype("<f4").tobytes())]
        if p.bias_offset < 0:
            continue
        bias_scale = (np.float32(p.input_scale) * scale).astype(np.float32)
        bias_q = np.round(bases[p.layer + "/bias"].astype(np.float64) / bias_scale.astype(np.float64)).astype("<i8")
        writes += [(p.bias_offset, bias_q.tobytes()), (p.bias_scale_offset, bias_scale.astype("<f4").tobytes())]
    return _splice(template, writes)


def score_frames(s, make, idx=None):
    idx = range(len(s.labels)) if idx is None else idx
    outs = []
    for i in idx:
        sess = QSession(make(i))
        outs.append(sess.run({"image": s.image[i][None]})["logits"])
    got = np.concatenate(outs).astype(np.float32)
    idx = list(idx)
    return scores(s.ref_sp[idx], got, np.asarray(s.labels)[idx])


def template_runs(s, label, graph, ranges_kind, factors=(1, 1.5, 2), requant_subset=96):
    from basisnet_deploy.artifacts.synthesis import synthesize
    row = OUT.setdefault(label, {})
    ex, ftempl, folded, ftable, fbases = float_template(s, graph)
    t = time.perf_counter()
    row["float_template_per_frame"] = score_frames(s, lambda i: synthesize(ftempl, ftable, fbases, s.ref_coeff[i]))
    row["float_template_score_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    if ranges_kind == "mean":
        res = minmax_calibration(ftempl, s.image_feeds())
    else:
        res = per_image_calibration(ftempl, ftable, fbases, s.image_feeds(), s.c_coeff)
    row["calib_s"] = round(time.perf_counter() - t, 1)
    save(sys.argv[2])
    for f in factors:
        r = {}
        fixed = widen(res, f)
        t = time.perf_counter()
        qtempl = quantize(ftempl, fixed)
        r["quantize_s"] = round(time.perf_counter() - t, 1)
        if f == 1:
            r["flatbuffer"] = fb_check(qtempl)
        # static: the quantized template itself (mean kernels baked), per-frame inputs only
        try:
            table, bases = ex.patch_table(qtempl, folded, s.baked, "int8")
            r["patch_table"] = {"ok": True, "entries": len(table),
                                "first": {k: v for k, v in vars(table[0]).items()}}
        except Exception as e:
            table = None
            r["patch_table"] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        if table is not None:
            t = time.perf_counter()
            try:
                r["synthesize_as_is"] = score_frames(s, lambda i: synthesize(qtempl, table, bases, s.ref_coeff[i]))
            except Exception as e:
                r["synthesize_as_is"] = f"{type(e).__name__}: {str(e)[:300]}"
            r["synthesize_as_is_s"] = round(time.perf_counter() - t, 1)
            t = time.perf_counter()
            r["patched_int64_bias"] = score_frames(s, lambda i: patch16(qtempl, table, bases, s.ref_coeff[i]))
            r["patched_int64_bias_s"] = round(time.perf_counter() - t, 1)
        print(label, f, r.get("patch_table"), r.get("synthesize_as_is"), r.get("patched_int64_bias"), flush=True)
        row[f"x{f}"] = r
        save(sys.argv[2])
    # (c) per-frame AEQ re-quantization with the fixed ranges, on a subset (every 5th frame)
    if not requant_subset:
        return
    idx = list(range(0, len(s.labels), max(1, len(s.labels) // requant_subset)))[:requant_subset]
    for f in factors:
        fixed = widen(res, f)
        t = time.perf_counter()
        row[f"x{f}"]["requantized_per_frame_subset"] = score_frames(
            s, lambda i: quantize(synthesize(ftempl, ftable, fbases, s.ref_coeff[i]), fixed), idx)
        row[f"x{f}"]["requantized_per_frame_subset_s"] = round(time.perf_counter() - t, 1)
        if "patched_int64_bias" in row[f"x{f}"]:  # the same subset, for comparison
            qtempl = quantize(ftempl, fixed)
            table, bases = ex.patch_table(qtempl, folded, s.baked, "int8")
            row[f"x{f}"]["patched_int64_bias_subset"] = score_frames(
                s, lambda i: patch16(qtempl, table, bases, s.ref_coeff[i]), idx)
        print(label, f, "requant subset", row[f"x{f}"]["requantized_per_frame_subset"], flush=True)
        save(sys.argv[2])


def onnx_coef(s):
    from onnxruntime.quantization import QuantType
    import _research_schemes
    from basisnet_deploy.converters import get_exporter
    ex = get_exporter("onnx")
    row = OUT.setdefault("coefficient_onnx", {})
    g = s._graphs[False]["specialist_coefficient"]
    for name, opts in (("qdq_a16w8", {}), ("qdq_a16w8_symmetric", {"extra_options": {"ActivationSymmetric": True}})):
        t = time.perf_counter()
        try:
            model = _research_schemes._onnx_static(g, reader(s.coeff_feeds()), "int8",
                                                   activation_type=QuantType.QInt16,
                                                   weight_type=QuantType.QInt8, **opts)
        except Exception as e:
            row[name] = f"{type(e).__name__}: {str(e)[:400]}"
            continue
        qs = time.perf_counter() - t
        r = run_coefficient(s, model, ".onnx", {})["isolated"]
        import onnx
        m = onnx.load_from_string(model)
        r["ops"] = dict(Counter(n.op_type for n in m.graph.node))
        r["qdq_types"] = dict(Counter(
            str(onnx.helper.tensor_dtype_to_np_dtype(i.data_type)) for i in m.graph.initializer
            if i.name.endswith("zero_point")))
        r.update(quantize_s=round(qs, 1), score_s=round(time.perf_counter() - t - qs, 1), bytes=len(model))
        row[name] = r
        print("onnx", name, r, flush=True)
        save(sys.argv[2])


def main():
    stages = sys.argv[1].split(",")
    if Path(sys.argv[2]).exists():
        OUT.update(json.loads(Path(sys.argv[2]).read_text()))
    t = time.perf_counter()
    s = Setup("/tmp/fid/ckpt2", "/tmp/photos2", 200, decompose=any(x.endswith("_dhs") for x in stages))
    OUT["heldout_images"] = len(s.labels)
    OUT["setup_s"] = round(time.perf_counter() - t, 1)
    for st in stages:
        t = time.perf_counter()
        try:
            if st == "coef":
                coef(s)
            elif st == "templ_mean":
                template_runs(s, "template_mean_ranges", s._graphs[False]["specialist_presynth"], "mean")
            elif st == "templ_per_image":
                template_runs(s, "template_per_image_ranges", s._graphs[False]["specialist_presynth"], "per_image")
            elif st == "templ_tuned":
                from fidelity_photos import tuned_template_graph
                g = tuned_template_graph(s)
                OUT["template_tuning"] = s.tuned_template.report()
                template_runs(s, "template_tuned_per_image_ranges", g, "per_image", requant_subset=0)
            elif st == "templ_per_image_dhs":  # hard-swish spelled out (integer ADD/MUL/RELU6...)
                template_runs(s, "template_per_image_ranges_decomposed_hs",
                              s._graphs[True]["specialist_presynth"], "per_image", requant_subset=0)
            elif st == "templ_tuned_dhs":  # tuned template weights, hard-swish spelled out
                from fidelity_photos import tuned_template_graph
                from basisnet_deploy.export.pipeline import _graphs
                tuned_template_graph(s)
                OUT["template_tuning_dhs_run"] = s.tuned_template.report()
                g = _graphs(s.net, s.cfg, s.baked, True,
                            tuned={"specialist_presynth": s.tuned_template.weights})["specialist_presynth"]
                template_runs(s, "template_tuned_per_image_ranges_decomposed_hs", g, "per_image", requant_subset=0)
            elif st == "coef_mixed_dhs":
                coef_mixed(s, True)
            elif st == "coef_mixed":
                coef_mixed(s)
            elif st == "onnx":
                onnx_coef(s)
        except Exception:
            OUT.setdefault("errors", {})[st] = traceback.format_exc()[-2000:]
            traceback.print_exc()
        OUT.setdefault("wall_s", {})[st] = round(time.perf_counter() - t, 1)
        save(sys.argv[2])


if __name__ == "__main__":
    main()
