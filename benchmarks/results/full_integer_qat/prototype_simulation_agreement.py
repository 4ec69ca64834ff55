"""One-off (experiment log, fidelity_photos.md run 13), needs int8_activation_tuning_prototype.patch
applied and the run's checkpoint in /tmp/fid/ckpt2, photos in /tmp/photos2: agreement of the simulated int8 LM (float or int8-grid weights, float or int8 activations) with the float LM on the held-out photos.

    .venv/bin/python benchmarks/results/full_integer_qat/prototype_simulation_agreement.py
"""
import sys, numpy as np
sys.path.insert(0, "benchmarks")  # run from the repository root
from fidelity_photos import Setup
from basisnet_deploy.quantization.weight_tuning import with_int8_activations, on_int8_grid, tuned_kernels
from basisnet_deploy.model.layers import hard_swish_decomposed
s = Setup("/tmp/fid/ckpt2", "/tmp/photos2", 200, decompose=False)
lm = s.net.lightweight
ref = s.ref_logits, s.ref_coeff
def score(model, label):
    out = model(s.light, training=False)
    lg, cf = np.asarray(out["logits"]), np.asarray(out["coefficients"])
    print(label, "agree", np.mean(lg.argmax(1) == ref[0].argmax(1)), "coef", np.abs(cf - ref[1]).max(), flush=True)
q = with_int8_activations(lm, s.c_light)
score(q, "float weights, int8 activations")
orig = lm.get_weights()
tv = lm.trainable_variables
for i, axis in tuned_kernels(tv).items():
    tv[i].assign(on_int8_grid(tv[i].value, axis))
score(lm, "int8 weights, float activations")
score(q, "int8 weights, int8 activations")
