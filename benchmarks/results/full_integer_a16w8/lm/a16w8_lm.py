"""A16W8 full-integer LM (int8 weights, int16 activations) on held-out photos: TFLite via
ai-edge-quantizer (static_wi8_ai16) and ONNX QDQ (QInt16 act / QInt8 per-channel weights).

    .venv/bin/python benchmarks/results/full_integer_a16w8/lm/a16w8_lm.py /tmp/fid/ckpt2 /tmp/photos2 OUT.json
"""
import copy, json, os, sys, time, traceback, tempfile
from collections import Counter
from pathlib import Path
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / "benchmarks")); sys.path.insert(0, str(ROOT))
import numpy as np
import fidelity_photos as fp

CKPT, PHOTOS, OUT = sys.argv[1], sys.argv[2], Path(sys.argv[3])
ONLY = set(sys.argv[4].split(",")) if len(sys.argv) > 4 else None
HERE = Path(__file__).resolve().parent
res = json.loads(OUT.read_text()) if OUT.exists() else {}
def save(): OUT.write_text(json.dumps(res, indent=1, default=str) + "\n")
def want(k): return ONLY is None or k in ONLY

from ai_edge_litert.interpreter import Interpreter
from ai_edge_quantizer import quantizer, recipe, qtyping
from basisnet_deploy.converters import get_exporter

# CALIB=minmax: ranges = global min/max over the calibration images. ai-edge-quantizer's own
# update (MIN_MAX_UNIFORM_QUANT -> qsv_utils.moving_average_update, smoothing 0.95) is an
# exponential moving average of each image's min/max, narrower than the calibration min/max.
CALIB = os.environ.get("CALIB", "ema")
if CALIB == "minmax":
    from ai_edge_quantizer import algorithm_manager
    def _global_minmax(qsv, new):
        if not qsv:
            return new
        return {"min": np.minimum(qsv["min"], new["min"]), "max": np.maximum(qsv["max"], new["max"])}
    algorithm_manager.get_update_qsv_func = lambda *a, **k: _global_minmax

t0 = time.perf_counter()
s = fp.Setup(CKPT, PHOTOS, 200, decompose=True)
print(f"setup {time.perf_counter()-t0:.0f}s", flush=True)
ex = get_exporter("tflite")

def tflite_ops(model):
    it = Interpreter(model_content=model); it.allocate_tensors()
    td = {t["index"]: t for t in it.get_tensor_details()}
    dt = lambda i: np.dtype(td[i]["dtype"]).name if i >= 0 else "-"
    cnt, float_ops = Counter(), []
    inputs = {d["index"] for d in it.get_input_details()}; outputs = {d["index"] for d in it.get_output_details()}
    for op in it._get_ops_details():
        ins = [dt(i) for i in op["inputs"]]; outs = [dt(i) for i in op["outputs"]]
        cnt[f"{op['op_name']}({','.join(ins)})->{','.join(outs)}"] += 1
        floats = [i for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0 and dt(i) == "float32"
                  and i not in inputs and i not in outputs]
        if floats:
            float_ops.append(op["op_name"])
    return {"ops": dict(cnt), "ops_touching_internal_float32": dict(Counter(float_ops)),
            "full_integer": not float_ops,
            "io": [(d["name"], np.dtype(d["dtype"]).name) for d in it.get_input_details() + it.get_output_details()]}

def float_tflite(graph):
    return ex.convert(graph, "float32")

_calib = {}
def aeq(float_model, key, widen=1.0, mixed=False, hs16=False):
    sig = list(Interpreter(model_content=float_model).get_signature_list())[0]
    qt = quantizer.Quantizer(float_model, recipe.static_wi8_ai16())
    if mixed:
        cfg = qtyping.OpQuantizationConfig(
            activation_tensor_config=qtyping.TensorQuantizationConfig(num_bits=8, symmetric=False),
            weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=8, symmetric=True,
                                                                  granularity=qtyping.QuantGranularity.CHANNELWISE),
            compute_precision=qtyping.ComputePrecision.INTEGER, explicit_dequantize=False)
        for op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            qt.update_quantization_recipe(regex=".*", operation_name=getattr(qtyping.TFLOperationName, op), op_config=cfg)
    if hs16:
        cfg16 = qtyping.OpQuantizationConfig(
            activation_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, symmetric=True),
            weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=8, symmetric=True),
            compute_precision=qtyping.ComputePrecision.INTEGER, explicit_dequantize=False, skip_checks=True)
        qt.update_quantization_recipe(regex=".*", operation_name=qtyping.TFLOperationName.HARD_SWISH, op_config=cfg16)
    t = time.perf_counter()
    if key not in _calib:
        _calib[key] = qt.calibrate({sig: s.lm_feeds()})
        _calib[key + "_seconds"] = round(time.perf_counter() - t, 1)
    calib_s = _calib[key + "_seconds"]
    t = time.perf_counter()
    cal = copy.deepcopy(_calib[key])
    if widen != 1.0:
        for v in cal.values():
            v["min"] = np.asarray(v["min"]) * widen; v["max"] = np.asarray(v["max"]) * widen
    model = bytes(qt.quantize(cal).quantized_model)
    return model, {"calibrate_s": calib_s, "quantize_s": round(time.perf_counter() - t, 2)}, sig

def run_lm_tflite(model):
    """fp.run_lm for a model whose signature input/outputs are int16 (AEQ quantizes graph IO):
    the project's LiteRTSession.cast rounds onto int8/uint8 inputs only and returns raw outputs,
    so here the float image is quantized with the input's scale/zero point and each output is
    dequantized. XNNPACK on (Interpreter default), 1 thread, one frame at a time."""
    it = Interpreter(model_content=model, num_threads=1)
    sig = list(it.get_signature_list())[0]
    run = it.get_signature_runner(sig)
    ind, outd = run.get_input_details(), run.get_output_details()
    def q(k, v):
        d = ind[k]; sc, zp = d["quantization"]
        if np.dtype(d["dtype"]).kind == "i":
            info = np.iinfo(d["dtype"]); v = np.clip(np.round(v / sc + zp), info.min, info.max)
        return v.astype(d["dtype"])
    def dq(k, v):
        sc, zp = outd[k]["quantization"]
        return (v.astype(np.float32) - zp) * sc if np.dtype(outd[k]["dtype"]).kind == "i" else v.astype(np.float32)
    outs = [run(**{k: q(k, x[None]) for k in ind}) for x in s.light]
    logits = np.concatenate([dq("logits", o["logits"]) for o in outs])
    coeff = np.concatenate([dq("coefficients", o["coefficients"]) for o in outs])
    row = fp.scores(s.ref_logits, logits, s.labels)
    row["coef_max_abs"] = round(float(np.abs(coeff - s.ref_coeff).max()), 4)
    row["io"] = {k: [np.dtype(d["dtype"]).name, [float(d["quantization"][0]), int(d["quantization"][1])]]
                 for k, d in list(ind.items()) + list(outd.items())}
    return row, coeff

def score(name, fn):
    if not want(name.split("@")[0]) and not want(name):
        return None
    print(f"== {name}", flush=True)
    try:
        model, secs, extra = fn()
        row, _ = fp.run_lm(s, model, ".onnx") if name.startswith("onnx") else run_lm_tflite(model)
        row.update(bytes=len(model), convert_seconds=secs, **(extra or {}))
        res[name] = row
        (HERE / f"models_{CALIB}").mkdir(exist_ok=True); (HERE / f"models_{CALIB}" / (name + (".onnx" if name.startswith("onnx") else ".tflite"))).write_bytes(model)
    except Exception as e:
        traceback.print_exc()
        res[name] = {"error": f"{type(e).__name__}: {str(e)[:600]}"}
    print(name, {k: v for k, v in res[name].items() if k not in ("ops",)}, flush=True)
    save()
    return res[name]

def tfl(graph, key, widen=1.0, mixed=False, hs16=False):
    def fn():
        fm = float_tflite(graph)
        model, secs, sig = aeq(fm, key, widen, mixed, hs16)
        return model, secs, {"signature": sig, "flatbuffer": tflite_ops(model)}
    return fn

g_hs = s._graphs[False]["lightweight"]
# float baselines
if want("float"):
    for nm, g in (("tflite_float_hs", g_hs), ("tflite_float_decomposed", s._graphs[True]["lightweight"])):
        fm = float_tflite(g); row, _ = fp.run_lm(s, fm, ".tflite"); row["bytes"] = len(fm); res[nm] = row; print(nm, row, flush=True)
    save()
for f in (1.0, 1.5, 2.0):
    score(f"tflite_a16w8_nearest@x{f}", tfl(g_hs, "nearest_hs", f))

# tuned weights (cached across runs)
tw = HERE / "tuned_weights.npz"
if tw.exists():
    from types import SimpleNamespace
    d = np.load(tw, allow_pickle=True)
    s.tuned = SimpleNamespace(weights=[d[f"w{i}"] for i in range(len(d.files) - 1)], report=lambda: json.loads(str(d["report"])))
g_tuned = fp.tuned_lm_graph(s)
if not tw.exists():
    np.savez(tw, report=json.dumps(s.tuned.report(), default=str), **{f"w{i}": w for i, w in enumerate(s.tuned.weights)})
res["tuning"] = s.tuned.report(); save()
for f in (1.0, 1.5, 2.0):
    r = score(f"tflite_a16w8_tuned@x{f}", tfl(g_tuned, "tuned_hs", f))

# weights check: dequantized int8 weights of the tuned AEQ model vs the tuned float TFLite's (folded) weights
def weights_check(float_model, q_model):
    fi = Interpreter(model_content=float_model); fi.allocate_tensors()
    qi = Interpreter(model_content=q_model); qi.allocate_tensors()
    fd = {t["name"]: t for t in fi.get_tensor_details()}
    out = []
    for op in qi._get_ops_details():
        if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        t = next(x for x in qi.get_tensor_details() if x["index"] == op["inputs"][1])
        if np.dtype(t["dtype"]) != np.int8 or t["name"] not in fd:
            out.append({"op": op["op_name"], "name": t["name"], "skip": np.dtype(t["dtype"]).name}); continue
        q = qi.get_tensor(t["index"]).astype(np.float64); qp = t["quantization_parameters"]
        sc = np.asarray(qp["scales"], np.float64); ax = qp["quantized_dimension"]
        shape = [1] * q.ndim; shape[ax] = -1
        deq = q * sc.reshape(shape)
        w = fi.get_tensor(fd[t["name"]]["index"]).astype(np.float64)
        steps = np.abs(deq - w) / sc.reshape(shape)
        out.append({"op": op["op_name"], "name": t["name"][-50:], "max_abs_diff": float(np.abs(deq - w).max()),
                    "max_diff_in_steps": float(steps.max()), "max_abs_w": float(np.abs(w).max())})
    return out
if want("wcheck"):
    try:
        fm_t, fm_n = float_tflite(g_tuned), float_tflite(g_hs)
        q_t = (HERE / f"models_{CALIB}" / "tflite_a16w8_tuned@x1.0.tflite").read_bytes()
        q_n = (HERE / f"models_{CALIB}" / "tflite_a16w8_nearest@x1.0.tflite").read_bytes()
        wc = weights_check(fm_t, q_t)
        wn = weights_check(fm_n, q_n)
        res["weights_check_tuned"] = {"layers": len(wc), "max_diff_in_steps_all": max(x.get("max_diff_in_steps", 0) for x in wc),
                                      "first_layers": wc[:4] + wc[-2:]}
        res["weights_check_nearest_float_vs_its_aeq"] = {"max_diff_in_steps_all": max(x.get("max_diff_in_steps", 0) for x in wn)}
        # tuned vs nearest: how many int8 codes differ (shows the tuned grid is not nearest rounding of the float model)
        save(); print("wcheck", res["weights_check_tuned"]["max_diff_in_steps_all"], flush=True)
    except Exception as e:
        traceback.print_exc(); res["weights_check_tuned"] = {"error": str(e)}; save()

# decomposed hard-swish graph (tuned weights)
g_tuned_dec = None
if want("tflite_a16w8_tuned_decomposed"):
    from basisnet_deploy.export.pipeline import _graphs
    g_tuned_dec = _graphs(s.net, s.cfg, s.baked, True, tuned={"lightweight": s.tuned.weights})["lightweight"]
    for f in (1.0, 1.5, 2.0):
        score(f"tflite_a16w8_tuned_decomposed@x{f}", tfl(g_tuned_dec, "tuned_dec", f))

score("tflite_a16w8_tuned_hs16_skipchecks@x1.0", tfl(g_tuned, "tuned_hs", 1.0, hs16=True))

# ONNX QDQ int16 act / int8 per-channel weights, tuned LM
def clip_bounds(proto):
    """{output of each Clip node: (min, max)}: onnxruntime's QDQ quantizer removes Relu/Clip
    (operators/activation.py, try_replacing_upstream_output) and lets the quantized range do
    the clipping, so a widened range must stay inside the Clip's bounds."""
    from onnx import numpy_helper
    consts = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for n in proto.graph.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    out = {}
    for n in proto.graph.node:
        if n.op_type == "Clip":
            lo = float(consts[n.input[1]]) if len(n.input) > 1 and n.input[1] else -np.inf
            hi = float(consts[n.input[2]]) if len(n.input) > 2 and n.input[2] else np.inf
            out[n.output[0]] = (lo, hi)
        elif n.op_type == "Relu":
            out[n.output[0]] = (0.0, np.inf)
    return out

def onnx_fn(graph, widen, clip_aware=False):
    def fn():
        import _research_schemes
        from onnxruntime.quantization import QuantType
        from onnxruntime.quantization.calibrate import load_tensors_data, save_tensors_data, TensorData, TensorsData
        cache = HERE / "onnx_calib_tuned_x1.json"
        opts = dict(activation_type=QuantType.QInt16, weight_type=QuantType.QInt8, per_channel=True)
        t = time.perf_counter()
        import tf2onnx, tensorflow as tf
        from basisnet_deploy.converters.onnx import OPSET, quantize_static_qdq
        global _proto
        if widen == 1.0 or _proto is None:
            if cache.exists(): cache.unlink()
            fn_ = tf.function(graph.fn, input_signature=graph.inputs)
            _proto, _ = tf2onnx.convert.from_function(fn_, input_signature=graph.inputs, opset=OPSET)
            m = quantize_static_qdq(_proto, graph, fp.reader(s.lm_feeds()), calibration_cache_path=str(cache), **opts)
        if widen != 1.0:
            td = load_tensors_data(cache)
            bounds = clip_bounds(_proto) if clip_aware else {}
            def rng(k, v):
                lo, hi = np.asarray(v.range_value[0]) * widen, np.asarray(v.range_value[1]) * widen
                if k in bounds:
                    lo, hi = np.maximum(lo, bounds[k][0]), np.minimum(hi, bounds[k][1])
                return TensorData(lowest=lo.astype(np.float32), highest=hi.astype(np.float32))
            wide = TensorsData(td.calibration_method, {k: rng(k, v) for k, v in td.data.items()})
            clipped_ranges = sum(k in bounds for k in td.data)
            wc = HERE / f"onnx_calib_tuned_x{widen}{'_clipaware' if clip_aware else ''}.json"; save_tensors_data(wide, wc)
            m = quantize_static_qdq(_proto, graph, fp.reader(s.lm_feeds()), calibration_cache_path=str(wc), **opts)
        secs = round(time.perf_counter() - t, 1)
        import onnx
        mp = onnx.load_from_string(m)
        prod = {o: n for n in mp.graph.node for o in n.output}
        inits = {i.name for i in mp.graph.initializer}
        cnt, float_in = Counter(), Counter()
        for n in mp.graph.node:
            cnt[f"{n.op_type}[{n.domain or 'ai.onnx'}]"] += 1
            if n.op_type in ("QuantizeLinear", "DequantizeLinear"): continue
            srcs = [prod[i].op_type if i in prod else ("init" if i in inits else "graph_input") for i in n.input if i]
            if any(x not in ("DequantizeLinear", "init") for x in srcs):
                float_in[n.op_type] += 1
        qdt = Counter(onnx.TensorProto.DataType.Name(i.data_type) for i in mp.graph.initializer
                      if any(n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] == i.name for n in mp.graph.node))
        return m, secs, {"clip_relu_ranges_kept_in_bounds": locals().get("clipped_ranges"), "onnx_ops": dict(cnt), "nodes_with_non_DQ_input": dict(float_in), "activation_zero_point_dtypes": dict(qdt)}
    return fn
_proto = None
for f in (1.0, 1.5, 2.0):
    score(f"onnx_a16w8_tuned@x{f}", onnx_fn(g_tuned, f))
for f in (1.5, 2.0):
    score(f"onnx_a16w8_tuned_clipaware@x{f}", onnx_fn(g_tuned, f, clip_aware=True))

# mixed: convs/FC int8 activations, rest int16
for f in (1.0, 2.0):
    score(f"tflite_mixed_a8convs_a16rest_tuned@x{f}", tfl(g_tuned, "tuned_hs", f, mixed=True))
print("done", flush=True)
