"""LM-only margin check: the full-16x8 recipe with the template left untuned (so only the LM's
tuning costs time), exported at several activation-range margins; prints the LM's held-out
agreement and coefficient error (and the template's, untuned)."""
import dataclasses, sys, time
from pathlib import Path
from types import MappingProxyType
sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from basisnet_deploy.targets import recipes as R
from basisnet_deploy.targets.kinds import Role
from basisnet_deploy.export.pipeline import ExportOptions, export
ckpt, seed, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
margins = [float(m) for m in sys.argv[4].split(",")]
lm_only = len(sys.argv) > 5 and sys.argv[5] == "lm-only"
extra = {}
for m in margins:
    r = dataclasses.replace(R.FULL_16X8, name=f"x-m{m}", ranges=dataclasses.replace(R.FULL_16X8.ranges, margin=m),
                            tuned=(Role.LIGHTWEIGHT,) if lm_only else R.FULL_16X8.tuned)
    extra[r.name] = r
R.RECIPES = MappingProxyType({**R.RECIPES, **extra})
for m in margins:
    t = time.time()
    out = f"/tmp/s36/mx/{ckpt.rstrip('/').split('/')[-1]}-s{seed}-{target}-m{m}{'-lm' if lm_only else ''}"
    man = export(ckpt, out, ExportOptions(
        target=target, calibration="/tmp/photos2/train", calibration_size=200, images="/tmp/photos2/heldout", seed=seed,
        verify_images=480, int8_recipe=f"x-m{m}", specialist="presynth", allow_low_agreement=True), progress=None).to_json()
    v = man["verification"]
    print(ckpt, seed, target, "margin", m, "LM", round(v["lightweight"]["top1_agreement"]*100, 2), v["lightweight"]["coefficients"]["max_abs"],
          "T iso", round(v["specialist_presynth"]["isolated"]["top1_agreement"]*100, 2),
          "e2e", round(v["specialist_presynth"]["end_to_end"]["top1_agreement"]*100, 2),
          "maxrel iso/e2e", v["specialist_presynth"]["isolated"]["logits"]["max_rel"], v["specialist_presynth"]["end_to_end"]["logits"]["max_rel"],
          f"{time.time()-t:.0f}s", flush=True)
