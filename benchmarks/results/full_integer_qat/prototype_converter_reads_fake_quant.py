"""One-off (experiment log, fidelity_photos.md run 13): the simulated int8 LM (fake quantization
in the graph, HARD_SWISH op) converted by the TF converter in its quantization-aware mode
(optimizations DEFAULT, no representative dataset, so the ranges are the graph's), scored on
the held-out photos and compared per crop with the simulation. Needs
int8_activation_tuning_prototype.patch applied in a checkout at /work/wt3, the run's
checkpoint in /tmp/fid/ckpt2 and photos in /tmp/photos2.

    .venv/bin/python benchmarks/results/full_integer_qat/prototype_converter_reads_fake_quant.py
"""
import sys, tempfile, numpy as np, tensorflow as tf
sys.path.insert(0, "/work/wt3"); sys.path.insert(0, "/work/wt3/benchmarks")
import basisnet_deploy; assert basisnet_deploy.__file__.startswith("/work/wt3"), basisnet_deploy.__file__
from fidelity_photos import Setup, reader, run_lm
from basisnet_deploy.converters.base import Graph
from basisnet_deploy.converters.tflite import saved_model_converter
from basisnet_deploy.quantization.weight_tuning import with_int8_activations, on_int8_grid, tuned_kernels
s = Setup("/tmp/fid/ckpt2", "/tmp/photos2", 200, decompose=False)
g = s._graphs[False]["lightweight"]
lm = g.model
q = with_int8_activations(lm, s.c_light)
def fn(image):
    out = q(image, training=False)
    return {"logits": out["logits"], "coefficients": out["coefficients"]}
qg = Graph("lightweight", q, fn, g.inputs, g.outputs)
for mode in ("qat",):
    with tempfile.TemporaryDirectory() as tmp:
        conv = saved_model_converter(qg, tmp)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "qat+calib":
            conv.representative_dataset = reader(s.lm_feeds())
        try:
            m = conv.convert()
        except Exception as e:
            print(mode, "FAILED", str(e)[:500]); continue
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=m)
    ops = sorted({d["op_name"] for d in it._get_ops_details()})
    dt = sorted({str(d["dtype"].__name__) for d in it.get_tensor_details()})
    row, coeff = run_lm(s, m, ".tflite")
    tv = lm.trainable_variables
    saved = [v.numpy() for v in tv]
    for i, axis in tuned_kernels(tv).items():
        tv[i].assign(on_int8_grid(tv[i].value, axis))
    sim = np.asarray(q(s.light, training=False)["coefficients"])
    for v, w in zip(tv, saved): v.assign(w)
    print(mode, ops, dt, row, "sim-vs-tflite max", np.abs(sim - coeff).max(), "mean", np.abs(sim - coeff).mean(), flush=True)
