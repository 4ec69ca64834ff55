"""One-off (experiment log, fidelity_photos.md run 13), needs int8_activation_tuning_prototype.patch
applied and the run's checkpoint in /tmp/fid/ckpt2, photos in /tmp/photos2: how close the simulated int8 LM's coefficients are to the TFLite static int8 LM's (HARD_SWISH op), per held-out crop, against the float LM's.

    .venv/bin/python benchmarks/results/full_integer_qat/prototype_simulation_vs_tflite.py
"""
import sys, numpy as np
sys.path.insert(0, "benchmarks")  # run from the repository root
from fidelity_photos import Setup, convert, reader, run_lm
from basisnet_deploy.converters import get_exporter
from basisnet_deploy.quantization.weight_tuning import with_int8_activations, on_int8_grid, tuned_kernels
s = Setup("/tmp/fid/ckpt2", "/tmp/photos2", 200, decompose=False)
ex = get_exporter("tflite")
m = convert(ex, s._graphs[False]["lightweight"], "int8", reader(s.lm_feeds()))
row, tfl_coeff = run_lm(s, m, ".tflite")
lm = s.net.lightweight
q = with_int8_activations(lm, s.c_light)
tv = lm.trainable_variables
for i, axis in tuned_kernels(tv).items():
    tv[i].assign(on_int8_grid(tv[i].value, axis))
sim = np.asarray(q(s.light, training=False)["coefficients"])
print("float vs tflite-int8", np.abs(s.ref_coeff - tfl_coeff).max(), np.abs(s.ref_coeff - tfl_coeff).mean())
print("sim vs tflite-int8", np.abs(sim - tfl_coeff).max(), np.abs(sim - tfl_coeff).mean())
