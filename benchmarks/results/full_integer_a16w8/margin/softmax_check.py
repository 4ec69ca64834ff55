import os, sys, numpy as np
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from ai_edge_litert.interpreter import Interpreter
from basisnet_deploy import data
from basisnet_deploy.model import checkpoint
exp = Path(sys.argv[1]); ck = sys.argv[2]
net, cfg = checkpoint.load(ck)
res, pre = cfg.architecture.light_resolution, cfg.preprocessing
x = data.image_folder(Path("/tmp/photos2/heldout")).tensors(res, pre)
ref = {k: v.numpy() for k, v in net.lightweight(x, training=False).items()}
it = Interpreter(model_path=str(exp / "lightweight.tflite"), experimental_preserve_all_tensors=True)
it.allocate_tensors()
ops = it._get_ops_details()
sm = [o for o in ops if o["op_name"] == "SOFTMAX"]
print([ (o["op_name"], o["inputs"], o["outputs"]) for o in sm])
det = {t["index"]: t for t in it.get_tensor_details()}
for o in sm:
    for i in list(o["inputs"]) + list(o["outputs"]):
        t = det[i]; print(i, t["name"], t["dtype"], t["shape"], t["quantization_parameters"]["scales"][:2], t["quantization_parameters"]["zero_points"][:2])
inp = it.get_input_details()[0]; outs = {d["name"]: d for d in it.get_output_details()}
print(list(outs))
errs_q, errs_f, agree = [], [], []
for n in range(len(x)):
    it.set_tensor(inp["index"], x[n:n+1]); it.invoke()
    o = sm[0]; tin = det[o["inputs"][0]]; tout = det[o["outputs"][0]]
    def deq(t):
        q = t["quantization_parameters"]; v = it.get_tensor(t["index"]).astype(np.float64)
        return (v - q["zero_points"][0]) * q["scales"][0] if len(q["scales"]) else v
    logits = deq(tin); sq = deq(tout)
    e = np.exp(logits - logits.max(-1, keepdims=True)); sf = e / e.sum(-1, keepdims=True)
    r = ref["coefficients"][n].reshape(sf.shape)
    errs_q.append(np.abs(sq - r).max()); errs_f.append(np.abs(sf - r).max())
print("int16 softmax coef max %.4f p99 %.4f | float softmax of the int16 logits max %.4f p99 %.4f" % (
    max(errs_q), np.percentile(errs_q, 99), max(errs_f), np.percentile(errs_f, 99)))
