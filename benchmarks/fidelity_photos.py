"""Issue #10: int8 fidelity recipes measured on held-out real photos (tests/photo_fixture.py).

For one checkpoint trained on ``PHOTOS/train``, each quantization recipe of each artifact is
converted, calibrated on ``PHOTOS/train`` images only, and scored on ``PHOTOS/heldout``
(spatially disjoint crops, never seen by training or calibration), one frame at a time:
top-1 agreement with the float Keras model, accuracy and its drop, logits max_rel, and for
the LM the coefficients' max abs error. Specialists: ``isolated`` (float LM coefficients)
and ``end_to_end`` (the given int8 LM's coefficients).

    .venv/bin/python benchmarks/fidelity_photos.py CKPT PHOTOS [--calibration-size 200]
        [--only lm_tflite,lm_onnx,...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class Setup:
    """Checkpoint, float references on the held-out photos, calibration feeds, graphs."""

    def __init__(self, ckpt, photos, calibration_size, decompose):
        from basisnet_deploy import data
        from basisnet_deploy.model import checkpoint
        from basisnet_deploy.calibration.images import calibration_images
        from basisnet_deploy.export.pipeline import _graphs

        self.net, self.cfg = checkpoint.load(ckpt)
        a, pre = self.cfg.architecture, self.cfg.preprocessing
        held = data.image_folder(Path(photos) / "heldout")
        assert tuple(held.class_names) == tuple(self.cfg.labels)
        self.labels = held.labels
        self.light = held.tensors(a.light_resolution, pre)
        self.image = held.tensors(a.resolution, pre)
        calib = calibration_images(str(Path(photos) / "train"), calibration_size, seed=0)
        self.c_light = np.stack([data.preprocess(im, a.light_resolution, pre) for im in calib.images])
        self.c_image = np.stack([data.preprocess(im, a.resolution, pre) for im in calib.images])
        lm = self.net.lightweight
        self.c_coeff = lm(self.c_light, training=False)["coefficients"].numpy()
        ref = lm(self.light, training=False)
        self.ref_logits, self.ref_coeff = ref["logits"].numpy(), ref["coefficients"].numpy()
        self.ref_sp = self.net.specialist([self.image, self.ref_coeff], training=False).numpy()
        self.baked = self.c_coeff.mean(axis=0)
        # as export does: hard-swish spelled out only for TFLite's static int8 recipes
        self._graphs = {d: _graphs(self.net, self.cfg, self.baked, decompose_hard_swish=d)
                        for d in ({False, True} if decompose else {False})}

    def graph(self, role: str, recipe: str):
        static = recipe.startswith("int8") or recipe == "int16x8"
        decomposed = static and True in self._graphs  # TFLite only
        return self._graphs[decomposed][role]

    def lm_feeds(self):
        return [{"image": x[None]} for x in self.c_light]

    def image_feeds(self):
        return [{"image": x[None]} for x in self.c_image]

    def coeff_feeds(self):
        a = self.cfg.architecture
        n = len(a.nonshared_blocks)
        onehots = [np.broadcast_to(np.eye(a.bases, dtype=np.float32)[k], (n, a.bases)) for k in range(a.bases)]
        return ([{"image": x[None], "coefficients": c[None]} for x, c in zip(self.c_image, self.c_coeff)]
                + [{"image": self.c_image[k][None], "coefficients": oh[None]} for k, oh in enumerate(onehots)])


def scores(ref, got, labels) -> dict:
    agree = float(np.mean(np.argmax(ref, -1) == np.argmax(got, -1)))
    acc_f = float(np.mean(np.argmax(ref, -1) == labels))
    acc_q = float(np.mean(np.argmax(got, -1) == labels))
    return {"agreement": round(100 * agree, 2), "accuracy": round(100 * acc_q, 2),
            "float_accuracy": round(100 * acc_f, 2), "drop": round(100 * (acc_f - acc_q), 2),
            "max_rel": round(float(np.abs(got - ref).max() / np.abs(ref).max()), 4)}


def session(model: bytes, suffix: str):
    from basisnet_deploy.runtime.sessions import open_session

    return open_session(Path("m" + suffix), model=model)


def run_lm(s: Setup, model: bytes, suffix: str):
    sess = session(model, suffix)
    outs = [sess.run({"image": x[None]}) for x in s.light]
    logits = np.concatenate([o["logits"] for o in outs]).astype(np.float32)
    coeff = np.concatenate([o["coefficients"] for o in outs]).astype(np.float32)
    row = scores(s.ref_logits, logits, s.labels)
    row["coef_max_abs"] = round(float(np.abs(coeff - s.ref_coeff).max()), 4)
    return row, coeff


def isolated_and_end_to_end(s: Setup, go, lm_coeffs: dict) -> dict:
    """Scores fed the float LM's coefficients, and fed each int8 LM recipe's."""
    out = {"isolated": scores(s.ref_sp, go(s.ref_coeff), s.labels)}
    for name, coeff in lm_coeffs.items():
        out[f"end_to_end (LM {name})"] = scores(s.ref_sp, go(coeff), s.labels)
    return out


def run_coefficient(s: Setup, model: bytes, suffix: str, lm_coeffs) -> dict:
    sess = session(model, suffix)

    def go(coeff):
        return np.concatenate([sess.run({"image": x[None], "coefficients": c[None]})["logits"]
                               for x, c in zip(s.image, coeff)]).astype(np.float32)
    return isolated_and_end_to_end(s, go, lm_coeffs)


def run_presynth(s: Setup, model: bytes, suffix: str, exporter, quantize, lm_coeff) -> dict:
    from basisnet_deploy.export.pipeline import fold_bases
    from basisnet_deploy.artifacts.synthesis import synthesize

    table, bases = exporter.patch_table(model, fold_bases(s.net.specialist), s.baked, quantize)
    from basisnet_deploy.runtime.sessions import open_session

    def go(coeff):
        outs = []
        for x, c in zip(s.image, coeff):
            sess = open_session(Path("t" + suffix), model=synthesize(model, table, bases, c))
            outs.append(sess.run({"image": x[None]})["logits"])
        return np.concatenate(outs).astype(np.float32)
    return isolated_and_end_to_end(s, go, lm_coeff)


def reader(feeds):
    from basisnet_deploy.calibration.reader import FeedReader

    return FeedReader(feeds)


def onnx_experiments() -> dict:
    """ONNX static int8 variants tried here only: name -> (scheme, quantize_static options)."""
    from onnxruntime.quantization import CalibrationMethod

    return {"int8_percentile": ("int8", {"calibrate_method": CalibrationMethod.Percentile}),
            "int8_entropy": ("int8", {"calibrate_method": CalibrationMethod.Entropy}),
            "int8_moving_average": ("int8", {"extra_options": {"CalibMovingAverage": True}}),
            "int8_float_head_percentile": ("int8_float_head",
                                           {"calibrate_method": CalibrationMethod.Percentile}),
            "int8_per_tensor": ("int8", {"per_channel": False})}


def convert(ex, graph, name: str, calibration=None) -> bytes:
    """The product's exporter for its schemes; _research_schemes.py for the experiments."""
    import _research_schemes

    scheme, options = (onnx_experiments().get(name, (name, {})) if ex.target.name == "onnx"
                       else (name, {}))
    return _research_schemes.convert(ex, graph, scheme, calibration, **options)


def aeq_lm(s: Setup, name: str) -> bytes:
    """ai-edge-quantizer per-op recipes on the float TFLite LM:
    aeq_dynamic_float_fc: int8 channelwise weights with dynamic int8 compute for convs, the
    FULLY_CONNECTED heads left float; aeq_weight_only: int8 weights, float compute."""
    from ai_edge_quantizer import quantizer, recipe

    from basisnet_deploy.converters import get_exporter

    float_model = get_exporter("tflite").convert(s.graph("lightweight", "float32"), "float32")
    base = recipe.weight_only_wi8_afp32() if name == "aeq_weight_only" else recipe.dynamic_wi8_afp32()
    qt = quantizer.Quantizer(float_model, base)
    if name == "aeq_dynamic_float_fc":
        qt.update_quantization_recipe(regex=".*", operation_name=recipe.TFLOperationName.FULLY_CONNECTED,
                                      algorithm_key=recipe.AlgorithmName.NO_QUANTIZE)
    return bytes(qt.quantize().quantized_model)


def tuned_lm_graph(s: Setup):
    """The LM graph with its int8 weights tuned on the calibration images (basisnet_deploy/quantization/weight_tuning.py),
    tuned once per run."""
    from basisnet_deploy.quantization.weight_tuning import Augmentation, tune_int8_weights
    from basisnet_deploy.export.pipeline import _graphs

    if getattr(s, "tuned", None) is None:
        views = Augmentation(s.cfg.preprocessing.input_range)  # as export tunes
        s.tuned = tune_int8_weights(s.net.lightweight, s.c_light, progress=print, augmentation=views)
        print(f"tuned: {s.tuned.report()}", flush=True)
    return _graphs(s.net, s.cfg, s.baked, False, tuned={"lightweight": s.tuned.weights})["lightweight"]


def tuned_template_graph(s: Setup):
    """The template graph with the specialist's static int8 weights tuned on the calibration
    images and the float LM's coefficients for them (the fidelity-int8-lm recipe's template)."""
    from basisnet_deploy.quantization.weight_tuning import Augmentation, tune_int8_weights
    from basisnet_deploy.export.pipeline import _graphs

    views = Augmentation(s.cfg.preprocessing.input_range)  # as export tunes
    s.tuned_template = tune_int8_weights(s.net.specialist, [s.c_image, s.c_coeff], progress=print,
                                         augmentation=views)
    print(f"tuned template: {s.tuned_template.report()}", flush=True)
    return _graphs(s.net, s.cfg, s.baked, False,
                   tuned={"specialist_presynth": s.tuned_template.weights})["specialist_presynth"]


def lm_recipes(s: Setup, target: str, names) -> tuple[dict, dict]:
    """{recipe: scores} and {recipe: int8 LM coefficients} for the LM on one target."""
    from basisnet_deploy.converters import get_exporter

    ex = get_exporter(target)
    rows, coeffs = {}, {}
    for name in names:
        t = time.perf_counter()
        q = "dynamic" if name == "dynamic" else name
        if name.startswith("aeq_"):
            model = aeq_lm(s, name)
        elif name == "int8_fused_hs":  # static int8 with TFLite's own HARD_SWISH op (not spelled out)
            q = "int8"
            model = convert(ex, s._graphs[False]["lightweight"], q, reader(s.lm_feeds()))
        elif name.endswith("_tuned"):  # the LM's int8 weights tuned first (the fidelity recipe)
            q = name.removesuffix("_tuned")
            model = convert(ex, tuned_lm_graph(s), q, reader(s.lm_feeds()) if q.startswith("int8") else None)
        else:
            model = convert(ex, s.graph("lightweight", q), q, reader(s.lm_feeds()) if q != "dynamic" else None)
        rows[name], coeffs[name] = run_lm(s, model, ex.suffix)
        rows[name]["bytes"] = len(model)
        rows[name]["seconds"] = round(time.perf_counter() - t, 1)
        print(f"LM {target} {name}: {rows[name]}", flush=True)
    return rows, coeffs


def lm_layer_report(s: Setup, name: str) -> list[dict]:
    """Per-layer error of the TFLite LM recipe against the float TFLite LM, on 32
    calibration images (basisnet_deploy/layer_report.py)."""
    from basisnet_deploy.converters import get_exporter
    from basisnet_deploy.export.layer_report import format_report, layer_errors

    ex = get_exporter("tflite")
    graph = s.graph("lightweight", name)
    rows = layer_errors(ex.convert(graph, "float32"), convert(ex, graph, name, reader(s.lm_feeds())),
                        s.lm_feeds()[:32])
    print(f"layer report, LM {name}:\n{format_report(rows)}", flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("photos")
    ap.add_argument("--calibration-size", type=int, default=200)
    ap.add_argument("--target", default="tflite")
    ap.add_argument("--lm", default="int8", help="comma-separated LM recipes")
    ap.add_argument("--e2e-lm", default=None, help="LM recipes whose coefficients drive end_to_end (comma-separated)")
    ap.add_argument("--coefficient", default="", help="coefficient-specialist recipes")
    ap.add_argument("--presynth", default="", help="presynth recipes: int8, int8_per_image, dynamic, weight_only, weight_only_tuned")
    ap.add_argument("--json", default=None)
    ap.add_argument("--layer-report", default="", help="LM recipes to get a per-layer report for")
    args = ap.parse_args()
    s = Setup(args.ckpt, args.photos, args.calibration_size, decompose=args.target == "tflite")
    out = {"args": vars(args), "heldout_images": len(s.labels)}
    out["lm"], coeffs = lm_recipes(s, args.target, [n for n in args.lm.split(",") if n])
    if getattr(s, "tuned", None) is not None:
        out["lm_tuning"] = s.tuned.report()
    lm_coeff = {n: coeffs[n] for n in (args.e2e_lm.split(",") if args.e2e_lm else list(coeffs)[:1])}
    out["layer_report"] = {n: lm_layer_report(s, n) for n in filter(None, args.layer_report.split(","))}
    out["coefficient"], out["presynth"] = {}, {}
    from basisnet_deploy.converters import get_exporter

    ex = get_exporter(args.target)
    for name in filter(None, args.coefficient.split(",")):
        model = convert(ex, s.graph("specialist_coefficient", name), name,
                        reader(s.coeff_feeds()) if name != "dynamic" else None)
        out["coefficient"][name] = run_coefficient(s, model, ex.suffix, lm_coeff)
        print(f"coefficient {args.target} {name}: {out['coefficient'][name]}", flush=True)
    for name in filter(None, args.presynth.split(",")):
        out["presynth"][name] = presynth_recipe(s, ex, name, lm_coeff)
        print(f"presynth {args.target} {name}: {out['presynth'][name]}", flush=True)
    if getattr(s, "tuned_template", None) is not None:
        out["template_tuning"] = s.tuned_template.report()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")




def presynth_recipe(s: Setup, ex, name: str, lm_coeff) -> dict:
    """int8: the template calibrated with the mean-coefficient kernels (the full recipe);
    int8_per_image: ranges widened over each calibration image's own kernels (TFLite);
    dynamic: int8 kernels, activations quantized per frame; weight_only: int8 kernels, float
    arithmetic (the fidelity recipe's template, TFLite through ai-edge-quantizer);
    weight_only_tuned: the same with the static kernels tuned first (fidelity-int8-lm)."""
    from basisnet_deploy.export.pipeline import fold_bases

    graph = s.graph("specialist_presynth", name)
    if name == "weight_only_tuned":  # the fidelity-int8-lm recipe's template
        model, report, name = ex.convert(tuned_template_graph(s), "weight_only"), {}, "weight_only"
    elif name in ("int8", "dynamic", "weight_only"):
        model = convert(ex, graph, name, reader(s.image_feeds()) if name == "int8" else None)
        report = {}
    else:
        from _research_schemes import convert_presynth_int8

        model, report = convert_presynth_int8(graph, reader(s.image_feeds()),
                                              fold_bases(s.net.specialist), s.baked, s.c_coeff)
    row = run_presynth(s, model, ex.suffix, ex, "int8" if name == "int8_per_image" else name, lm_coeff)
    row["report"] = report
    return row


if __name__ == "__main__":
    main()
