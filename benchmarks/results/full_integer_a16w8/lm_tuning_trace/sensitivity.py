"""LM per-kernel sensitivity: nearest int8 rounding of all kernels but one (leave-one-out) and of
one kernel alone, on the 480 held-out photos: agreement and coef max abs."""
import os, sys, json
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, tensorflow as tf
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from basisnet_deploy import data
from basisnet_deploy.model import checkpoint
from basisnet_deploy.quantization import weight_tuning as wt
net, cfg = checkpoint.load(sys.argv[1])
res, pre = cfg.architecture.light_resolution, cfg.preprocessing
x = tf.constant(data.image_folder(Path("/tmp/photos2/heldout")).tensors(res, pre))
m = net.lightweight
tv = m.trainable_variables
kern = wt.tuned_kernels(tv)
start = [v.value for v in tv]
frozen = [v.value for v in m.non_trainable_variables]
def run(vals):
    o = dict(m.stateless_call(vals, frozen, x, training=False)[0])
    return o["logits"].numpy(), o["coefficients"].numpy()
rl, rc = run(start)
def score(vals):
    l, c = run(vals)
    err = np.abs(c - rc).reshape(len(c), -1).max(1)
    return round(float(np.mean(l.argmax(1) == rl.argmax(1))), 4), round(float(err.max()), 4), round(float(np.percentile(err, 99)), 4)
rounded = {i: wt.on_int8_grid(start[i], a) for i, a in kern.items()}
print("all", score([rounded.get(i, w) for i, w in enumerate(start)]))
rows = []
for i in kern:
    only = score([rounded[i] if j == i else w for j, w in enumerate(start)])
    loo = score([w if j == i else rounded.get(j, w) for j, w in enumerate(start)])
    rows.append((tv[i].path, tuple(tv[i].shape), only, loo))
    print(tv[i].path, tuple(tv[i].shape), "only", only, "all-but", loo, flush=True)
