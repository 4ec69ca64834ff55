"""``bench``: per-stage and end-to-end figures, every one measured in this run.

Per stage (lightweight, synthesis, specialist, and the plain baseline when exported), as
TFLite's ``benchmark_model`` reports them: init (session creation), first inference, then
latency percentiles over the frames after ``warmup``. End to end, for each runner:
throughput, per-frame latency percentiles (queueing included), early-exit rate, average MAdds
per frame (the manifest's cost model at the measured exit rate) and the process's peak RSS.
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np

from basisnet_deploy.runtime.backends import make_factory
from basisnet_deploy.artifacts.manifest import expected_madds
from basisnet_deploy.runtime.deployment import Deployment
from basisnet_deploy.runtime.runner import ResynthesisPolicy, TwoStageRunner
from basisnet_deploy.artifacts.synthesis import synthesize


def percentiles(samples_ms) -> dict:
    a = np.asarray(samples_ms, np.float64)
    return {"p50": round(float(np.percentile(a, 50)), 4), "p90": round(float(np.percentile(a, 90)), 4),
            "p99": round(float(np.percentile(a, 99)), 4), "mean": round(float(a.mean()), 4),
            "count": int(a.size)}


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def _time_ms(fn):
    t = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t) * 1e3, out


def _stage(factory, path, feeds_list, warmup, model=None) -> dict:
    init_ms, session = _time_ms(lambda: factory(path, model))
    first_ms, _ = _time_ms(lambda: session.run(feeds_list[0]))
    for i in range(warmup):
        session.run(feeds_list[i % len(feeds_list)])
    lat = []
    for feeds in feeds_list:
        ms, _ = _time_ms(lambda: session.run(feeds))
        lat.append(ms)
    return {"init_ms": round(init_ms, 3), "first_inference_ms": round(first_ms, 3),
            "latency_ms": percentiles(lat)}


def bench(directory, delegate: str = "xnnpack", runtime: str = "litert", runner: str = "both",
          form: str = "presynth", threshold: float | None = None, frames: int = 200,
          warmup: int = 20, threads: int = 1, images=None, delegate_path: str | None = None,
          allow_fallback: bool = False, policy: ResynthesisPolicy | None = None,
          progress=None) -> dict:
    say = progress or (lambda msg: None)
    dep = Deployment(directory)
    if runtime == "litert" and dep.manifest["target"] != "tflite" or \
            runtime == "onnxruntime" and dep.manifest["target"] != "onnx":
        from basisnet_deploy.common.errors import UserError

        raise UserError(f"{directory} is a {dep.manifest['target']} export; --runtime {runtime} "
                        f"runs {'tflite' if runtime == 'litert' else 'onnx'} exports")
    factory = make_factory(runtime, delegate, threads, delegate_path, allow_fallback,
                           probe=str(dep.path("lightweight")))
    # The lightweight model stays on the CPU, as BasisNet is meant to run.
    light_factory = make_factory(runtime, "xnnpack" if delegate != "cpu" else "cpu", threads)
    threshold = dep.threshold if threshold is None else threshold
    imgs = _images(images, dep)
    frame_list = [dep.frame(imgs[i % len(imgs)]) for i in range(frames)]
    say(f"{len(frame_list)} frames from {len(imgs)} images")

    report = {"directory": str(directory), "runtime": runtime, "delegate": delegate,
              "fallback": factory.fallback_note, "threads": threads, "frames": frames,
              "warmup": warmup, "specialist_form": form, "threshold": threshold,
              "processors": {"lightweight": light_factory.processor, "specialist": factory.processor},
              "stages": {}, "runners": {}}

    say("per-stage: lightweight")
    light_feeds = [{"image": f[0]} for f in frame_list]
    report["stages"]["lightweight"] = _stage(light_factory, dep.path("lightweight"), light_feeds, warmup)
    lm = light_factory(dep.path("lightweight"))
    coeffs = [np.asarray(lm.run(f)["coefficients"], np.float32)[0] for f in light_feeds]

    say(f"per-stage: specialist ({form})")
    if form == "coefficient":
        feeds = [{"image": f[1], "coefficients": c[None]} for f, c in zip(frame_list, coeffs)]
        report["stages"]["specialist"] = _stage(factory, dep.path("specialist_coefficient"), feeds, warmup)
    else:
        ps = dep.presynth()
        feeds = [{"image": f[1]} for f in frame_list]
        model = synthesize(ps.template, ps.table, ps.bases, coeffs[0])
        report["stages"]["specialist"] = _stage(factory, ps.path, feeds, warmup, model=model)
        say("per-stage: synthesis (+ session re-creation)")
        synth, recreate = [], []
        for c in coeffs[: max(10, min(len(coeffs), 50))]:
            ms, model = _time_ms(lambda: synthesize(ps.template, ps.table, ps.bases, c))
            synth.append(ms)
            ms2, _ = _time_ms(lambda: factory(ps.path, model))
            recreate.append(ms + ms2)
        report["stages"]["synthesis"] = {"latency_ms": percentiles(synth),
                                         "with_session_recreation_ms": percentiles(recreate)}
    if "baseline_plain" in dep.artifacts:
        say("per-stage: plain baseline")
        feeds = [{"image": f[1]} for f in frame_list]
        report["stages"]["baseline_plain"] = _stage(factory, dep.path("baseline_plain"), feeds, warmup)
        report["specialist_vs_baseline_p50"] = round(
            report["stages"]["specialist"]["latency_ms"]["p50"]
            / report["stages"]["baseline_plain"]["latency_ms"]["p50"], 3)

    modes = ["sequential", "pipelined"] if runner == "both" else [runner]
    cost = dep.cost()
    for mode in modes:
        say(f"end to end: {mode}")
        run = TwoStageRunner(dep, light_factory, factory, threshold, form, mode, policy=policy)
        list(run.run(frame_list[:warmup]))  # warm-up pass, sessions and caches
        run = TwoStageRunner(dep, light_factory, factory, threshold, form, mode, policy=policy)
        t = time.perf_counter()
        results = list(run.run(frame_list))
        wall = time.perf_counter() - t
        exit_rate = float(np.mean([r.stage == "lightweight" for r in results]))
        report["runners"][mode] = {
            "throughput_fps": round(len(results) / wall, 2),
            "latency_ms": percentiles([r.latency_ms for r in results]),
            "early_exit_rate": round(exit_rate, 4),
            "avg_madds": int(expected_madds(cost, exit_rate)),
            "resyntheses": run.resyntheses if form == "presynth" else None,
            "peak_rss_mb": peak_rss_mb(),
        }
    first = report["runners"][modes[0]]
    report["early_exit_rate"] = first["early_exit_rate"]
    report["avg_madds"] = first["avg_madds"]
    report["full_pipeline_madds"] = cost["madds"]
    s = report["stages"]
    bottleneck = max(s["lightweight"]["latency_ms"]["p50"], s["specialist"]["latency_ms"]["p50"])
    report["stage_bound_fps"] = round(1000.0 / bottleneck, 2)  # 1 / max(t_light, t_specialist)
    if len(modes) == 2:
        report["pipelined_vs_sequential"] = round(
            report["runners"]["pipelined"]["throughput_fps"]
            / report["runners"]["sequential"]["throughput_fps"], 3)
    return report


def _images(images, dep):
    from basisnet_deploy.data import digits
    from basisnet_deploy.data.datasets import sample_folder

    if images in (None, "digits"):
        return digits().images
    return sample_folder(str(images), 10**9).images
