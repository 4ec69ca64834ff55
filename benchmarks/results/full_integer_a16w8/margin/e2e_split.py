"""Split an export's end-to-end disagreements: float specialist fed the exported LM's
coefficients (the LM's share) vs the float pipeline; and the exported pipeline."""
import os, sys, numpy as np
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from ai_edge_litert.interpreter import Interpreter
from basisnet_deploy import data
from basisnet_deploy.model import checkpoint
exp, ck = Path(sys.argv[1]), sys.argv[2]
net, cfg = checkpoint.load(ck)
a, pre = cfg.architecture, cfg.preprocessing
folder = data.image_folder(Path("/tmp/photos2/heldout"))
xs, xl = folder.tensors(a.resolution, pre), folder.tensors(a.light_resolution, pre)
fc = net.lightweight(xl, training=False)["coefficients"].numpy()
def spec(c):
    out = net.specialist([xs, c], training=False)
    return (out["logits"] if isinstance(out, dict) else out).numpy()
ref = spec(fc)
it = Interpreter(model_path=str(exp / "lightweight.tflite")); it.allocate_tensors()
run = it.get_signature_runner()
qc = []
for n in range(len(xl)):
    o = run(**{list(run.get_input_details())[0]: xl[n:n+1]})
    qc.append([v for k, v in o.items() if v.ndim == 3][0][0])
qc = np.stack(qc)
got = spec(qc)
print("LM coef max abs", float(np.abs(qc - fc).max()), "float specialist on the LM's coefficients: disagreements",
      int((got.argmax(1) != ref.argmax(1)).sum()), "of", len(ref))
s = np.sort(ref, 1); gap = s[:, -1] - s[:, -2]
bad = np.where(got.argmax(1) != ref.argmax(1))[0]
print("their top-2 gaps", np.round(gap[bad], 4).tolist(), "median gap", round(float(np.median(gap)), 4))
