"""Per-tensor error of the A16W8 coefficient-input specialist vs float (3 held-out frames)."""
import sys, json
sys.path.insert(0, "/work/main/benchmarks"); sys.path.insert(0, "/work/main")
sys.path.insert(0, "/work/main/benchmarks/results/full_integer_a16w8/specialists")
import numpy as np
from a16w8_specialists import *
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert import schema_py_generated as fb
s = Setup("/tmp/fid/ckpt2", "/tmp/photos2", 200, decompose=False)
from basisnet_deploy.converters import get_exporter
fbytes = get_exporter("tflite").convert(s._graphs[False]["specialist_coefficient"], "float32")
mm = minmax_calibration(fbytes, s.coeff_feeds())
q = quantize(fbytes, mm)
open("coef_a16w8_minmax.tflite", "wb").write(q)
def run(model, i):
    it = Interpreter(model_content=model, experimental_preserve_all_tensors=True); it.allocate_tensors()
    for d in it.get_input_details():
        x = (s.image[i][None] if "image" in d["name"] else s.ref_coeff[i][None]).astype(np.float32)
        sc, zp = d["quantization"]
        if d["dtype"] != np.float32:
            x = np.clip(np.round(x / sc) + zp, -32768, 32767).astype(d["dtype"])
        it.set_tensor(d["index"], x)
    it.invoke()
    out = {}
    for d in it.get_tensor_details():
        try: v = it.get_tensor(d["index"])
        except ValueError: continue
        if v is None or v.size == 0: continue
        sc, zp = d["quantization"]
        out[d["name"]] = (v.astype(np.float32) - zp) * sc if sc else v.astype(np.float32)
        out[d["name"] + "#dtype"] = str(d["dtype"])
    return out
# op order in quantized model
m = fb.Model.GetRootAs(q, 0); g = m.Subgraphs(0)
names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
for i in [0, 1]:
    F, Q = run(fbytes, i), run(q, i)
    print("frame", i)
    for j in range(g.OperatorsLength()):
        op = g.Operators(j); c = m.OperatorCodes(op.OpcodeIndex())
        oname = names.get(max(c.BuiltinCode(), c.DeprecatedBuiltinCode()))
        t = g.Tensors(op.Outputs(0)).Name().decode()
        if t in F and t in Q and F[t].shape == Q[t].shape:
            e = np.abs(F[t]-Q[t]).max() / (np.abs(F[t]).max() + 1e-12)
            fin = [g.Tensors(op.Inputs(k)).Name().decode()[-40:] + ":" + str(g.Tensors(op.Inputs(k)).Type()) for k in range(op.InputsLength()) if op.Inputs(k) >= 0]
            if e > 0.02 or j < 3: print(f"{j:3d} {oname:18s} rel={e:.3g} {t[-50:]} ins={fin}")
    break
