"""Per-op error of the A16W8 template (mean kernels, mean-kernel min/max ranges) vs the float template."""
import sys
sys.path.insert(0, "/work/main/benchmarks"); sys.path.insert(0, "/work/main")
sys.path.insert(0, "/work/main/benchmarks/results/full_integer_a16w8/specialists")
import numpy as np
from a16w8_specialists import *
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert import schema_py_generated as fb
s = Setup("/tmp/fid/ckpt2", "/tmp/photos2", 200, decompose=False)
ex, ftempl, folded, ftable, fbases = float_template(s, s._graphs[False]["specialist_presynth"])
mm = minmax_calibration(ftempl, s.image_feeds())
q = quantize(ftempl, mm)
open("template_a16w8_mean.tflite", "wb").write(q)
def run(model, i, calib=False):
    it = Interpreter(model_content=model, experimental_preserve_all_tensors=True); it.allocate_tensors()
    for d in it.get_input_details():
        x = (s.c_image[i] if calib else s.image[i])[None].astype(np.float32)
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
    return out
m = fb.Model.GetRootAs(q, 0); g = m.Subgraphs(0)
names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
for i, calib in [(0, True), (0, False)]:
    F, Q = run(ftempl, i, calib), run(q, i, calib)
    print("frame", i, "calibration image" if calib else "heldout")
    for j in range(g.OperatorsLength()):
        op = g.Operators(j); c = m.OperatorCodes(op.OpcodeIndex())
        oname = names.get(max(c.BuiltinCode(), c.DeprecatedBuiltinCode()))
        t = g.Tensors(op.Outputs(0)).Name().decode()
        if t in F and t in Q and F[t].shape == Q[t].shape:
            e = np.abs(F[t]-Q[t]).max() / (np.abs(F[t]).max() + 1e-12)
            if e > 0.02 or j < 2 or j == g.OperatorsLength() - 1:
                rng = mm.get(t)
                print(f"{j:3d} {oname:18s} rel={e:.3g} fmax={np.abs(F[t]).max():.3g} range={None if rng is None else (float(np.min(rng['min'])), float(np.max(rng['max'])))} {t[-60:]}")
