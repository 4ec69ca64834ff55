"""One-off (experiment log): the full recipe's artifacts with TFLite's own HARD_SWISH op
(not spelled out), the template calibrated on the mean kernels and on per-image kernels.

    .venv/bin/python benchmarks/results/full_integer_qat/fused_hardswish_template.py /tmp/fid/ckpt2 /tmp/photos2 OUT.json
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from fidelity_photos import Setup, convert, lm_recipes, presynth_recipe, reader  # noqa: E402

from basisnet_deploy.converters import get_exporter  # noqa: E402

s = Setup(sys.argv[1], sys.argv[2], 200, decompose=False)  # every graph keeps HARD_SWISH
ex = get_exporter("tflite")
out = {"args": sys.argv[1:], "hard_swish": "fused (HARD_SWISH op)"}
out["lm"], coeffs = lm_recipes(s, "tflite", ["int8"])
out["presynth"] = {name: presynth_recipe(s, ex, name, coeffs) for name in ("int8", "int8_per_image")}
print(json.dumps(out["presynth"], indent=1))
Path(sys.argv[3]).write_text(json.dumps(out, indent=1) + "\n")
