import os, sys, numpy as np
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from ai_edge_litert.interpreter import Interpreter
from basisnet_deploy import data
from basisnet_deploy.model import checkpoint
exp = Path(sys.argv[1]); ck = sys.argv[2]
net, cfg = checkpoint.load(ck)
res, pre = cfg.architecture.light_resolution, cfg.preprocessing
x = data.image_folder(Path("/tmp/photos2/heldout")).tensors(res, pre)
it = Interpreter(model_path=str(exp / "lightweight.tflite"), experimental_preserve_all_tensors=True)
it.allocate_tensors()
det = [t for t in it.get_tensor_details() if t["dtype"] == np.int16]
inp = it.get_input_details()[0]
sat = {t["index"]: 0 for t in det}; peak = {t["index"]: 0 for t in det}; images = {t["index"]: [] for t in det}
for n in range(len(x)):
    it.set_tensor(inp["index"], x[n:n+1]); it.invoke()
    for t in det:
        v = np.abs(it.get_tensor(t["index"]).astype(np.int32))
        s = int((v >= 32767).sum())
        if s: sat[t["index"]] += s; images[t["index"]].append(n)
        peak[t["index"]] = max(peak[t["index"]], int(v.max()))
for t in det:
    if sat[t["index"]] or peak[t["index"]] > float(os.environ.get("PEAK", 30000)):
        print(t["name"][:70], "saturated values", sat[t["index"]], "images", images[t["index"]][:8], "peak", peak[t["index"]])
