"""One-off (experiment log, fidelity_photos.md run 13), needs int8_activation_tuning_prototype.patch
applied and the run's checkpoint in /tmp/fid/ckpt2, photos in /tmp/photos2: int8-weight tuning through simulated int8 activations at the rates given, then the TFLite static int8 LM (HARD_SWISH op) scored on the held-out photos.

    .venv/bin/python benchmarks/results/full_integer_qat/prototype_tuning_rates.py 0.05,0.3 1000
"""
import sys, json, numpy as np
sys.path.insert(0, "benchmarks")  # run from the repository root
from fidelity_photos import Setup, convert, reader, run_lm
from basisnet_deploy.converters import get_exporter
from basisnet_deploy.export.pipeline import _graphs
from basisnet_deploy.quantization.weight_tuning import Augmentation, tune_int8_weights
from basisnet_deploy.quantization.settings import WeightTuning
s = Setup("/tmp/fid/ckpt2", "/tmp/photos2", 200, decompose=False)
ex = get_exporter("tflite")
for lr in [float(a) for a in sys.argv[1].split(",")]:
    t = tune_int8_weights(s.net.lightweight, s.c_light, WeightTuning(learning_rate=lr, steps=int(sys.argv[2])), print,
                          Augmentation(s.cfg.preprocessing.input_range), int8_activations=True)
    g = _graphs(s.net, s.cfg, s.baked, False, tuned={"lightweight": t.weights})["lightweight"]
    m = convert(ex, g, "int8", reader(s.lm_feeds()))
    print("lr", lr, t.report()["best_step"], t.report()["held_back_loss"], run_lm(s, m, ".tflite")[0], flush=True)
