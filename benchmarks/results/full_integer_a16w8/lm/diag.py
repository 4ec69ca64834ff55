"""Diagnostics for the A16W8 LM: (a) the int8 weights onnxruntime writes for the tuned LM equal
the tuned float weights (same pre-processed proto); (b) which activations of the tuned float
TFLite LM exceed their calibration range (global min/max over 200 train images) on the 480
held-out crops, as the ratio held-out max|x| / calibration max|x| per tensor.
    CALIB=minmax .venv/bin/python benchmarks/results/full_integer_a16w8/lm/diag.py /tmp/fid/ckpt2 /tmp/photos2 OUT.json"""
import json, os, sys
from pathlib import Path
from types import SimpleNamespace
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / "benchmarks")); sys.path.insert(0, str(ROOT))
import numpy as np
import fidelity_photos as fp
from basisnet_deploy.converters import get_exporter
HERE = Path(__file__).resolve().parent
s = fp.Setup(sys.argv[1], sys.argv[2], 200, decompose=False)
d = np.load(HERE / "tuned_weights.npz", allow_pickle=True)
s.tuned = SimpleNamespace(weights=[d[f"w{i}"] for i in range(len(d.files) - 1)])
g = fp.tuned_lm_graph(s)
out = {}
# (a) ONNX weights
import onnx, tf2onnx, tensorflow as tf
from onnx import numpy_helper
from onnxruntime.quantization import QuantType
from basisnet_deploy.converters.onnx import OPSET, quantize_static_qdq, _pre_processed
proto, _ = tf2onnx.convert.from_function(tf.function(g.fn, input_signature=g.inputs), input_signature=g.inputs, opset=OPSET)
with _pre_processed(proto, g) as tmp:
    pre = onnx.load(tmp / "pre.onnx")
fl = {i.name: numpy_helper.to_array(i) for i in pre.graph.initializer}
q = onnx.load_from_string(quantize_static_qdq(proto, g, fp.reader(s.lm_feeds()), activation_type=QuantType.QInt16,
                                              weight_type=QuantType.QInt8, per_channel=True))
qi = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
rows = []
for n in q.graph.node:
    if n.op_type == "DequantizeLinear" and n.input[0] in qi and qi[n.input[0]].dtype == np.int8:
        base = n.input[0].removesuffix("_quantized")
        if base not in fl: continue
        sc = qi[n.input[1]].astype(np.float64); w = fl[base].astype(np.float64)
        ax = next((a.i for a in n.attribute if a.name == "axis"), 1)
        shp = [1] * w.ndim; shp[ax] = -1
        steps = np.abs(qi[n.input[0]] * sc.reshape(shp) - w) / sc.reshape(shp)
        rows.append((base, float(steps.max())))
out["onnx_int8_weights_vs_tuned_float"] = {"weights": len(rows), "max_diff_in_int8_steps": max(r[1] for r in rows),
                                           "examples": rows[:3]}
print(out, flush=True)
# (b) activation ranges: held-out vs calibration (global min/max, ai-edge-quantizer calibrator)
from ai_edge_quantizer import quantizer, recipe, algorithm_manager
from ai_edge_litert.interpreter import Interpreter
algorithm_manager.get_update_qsv_func = lambda *a, **k: (lambda qsv, new: new if not qsv else
    {"min": np.minimum(qsv["min"], new["min"]), "max": np.maximum(qsv["max"], new["max"])})
fm = get_exporter("tflite").convert(g, "float32")
sig = list(Interpreter(model_content=fm).get_signature_list())[0]
def ranges(feeds):
    qt = quantizer.Quantizer(fm, recipe.static_wi8_ai16())
    return {k: float(max(np.abs(v["min"]).max(), np.abs(v["max"]).max())) for k, v in qt.calibrate({sig: feeds}).items()}
cal = ranges(s.lm_feeds()); held = ranges([{"image": x[None]} for x in s.light])
ratio = sorted(((held[k] / max(cal[k], 1e-12), k) for k in cal if k in held), reverse=True)
out["activation_range_heldout_over_calibration"] = {"tensors": len(ratio), "over_1.0": sum(r > 1.0 for r, _ in ratio),
    "over_1.5": sum(r > 1.5 for r, _ in ratio), "top": [(round(r, 3), k) for r, k in ratio[:8]]}
print(json.dumps(out, indent=1), flush=True)
Path(sys.argv[3]).write_text(json.dumps(out, indent=1) + "\n")
