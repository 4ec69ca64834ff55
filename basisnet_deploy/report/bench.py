"""``bench``: per-stage and end-to-end figures, every one measured in this run.

Per stage (lightweight, synthesis, specialist, and the plain baseline when exported), as
TFLite's ``benchmark_model`` reports them: init (session creation, with the delegate's
preparation: XNNPACK packs the weights there), first inference, then
latency percentiles over the frames after ``warmup``. End to end, for each runner:
throughput, per-frame latency percentiles (queueing included), early-exit rate, average MAdds
per frame (the manifest's cost model at the measured exit rate) and the process's peak RSS.
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from basisnet_deploy.artifacts.manifest import MANIFEST_FILE, Role, agreement_warning, expected_madds
from basisnet_deploy.artifacts.synthesis import synthesize
from basisnet_deploy.runtime.synthesizer import model_bytes_fn
from basisnet_deploy.common.errors import UserError
from basisnet_deploy.common.files import sha256_hex
from basisnet_deploy.runtime.backends import make_factory, stage_threads
from basisnet_deploy.runtime.deployment import Deployment
from basisnet_deploy.runtime.runner import ResynthesisPolicy, RunnerOptions, TwoStageRunner


def percentiles(samples_ms) -> dict:
    a = np.asarray(samples_ms, np.float64)
    return {"p50": round(float(np.percentile(a, 50)), 4), "p90": round(float(np.percentile(a, 90)), 4),
            "p99": round(float(np.percentile(a, 99)), 4), "mean": round(float(a.mean()), 4),
            "count": int(a.size)}


def ratio(numerator: float, denominator: float) -> float:
    """A ratio to four significant digits: fixed decimals would lose most of a small one."""
    return float(f"{numerator / denominator:.4g}")


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def _time_ms(fn):
    t = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t) * 1e3, out


def _stage(factory, path, feeds_list, warmup, model=None) -> StageFigures:
    init_ms, session = _time_ms(lambda: factory(path, model))
    first_ms, _ = _time_ms(lambda: session.run(feeds_list[0]))
    for i in range(warmup):
        session.run(feeds_list[i % len(feeds_list)])
    lat = []
    for feeds in feeds_list:
        ms, _ = _time_ms(lambda: session.run(feeds))
        lat.append(ms)
    return StageFigures(latency_ms=percentiles(lat), init_ms=round(init_ms, 3),
                        first_inference_ms=round(first_ms, 3))


@dataclass(frozen=True)
class BenchOptions:
    """What ``bench`` measures; the CLI's flags map one to one."""

    delegate: str = "xnnpack"
    runtime: str = "litert"
    runner: str = "both"  # sequential, pipelined or both
    form: str = "presynth"  # specialist form: presynth or coefficient
    threshold: float | None = None  # None: the manifest's
    frames: int = 200
    warmup: int = 20
    threads: int | None = None  # the specialist's; None: chosen from the core count
    images: str | None = None  # a folder; None or 'digits': digits
    delegate_path: str | None = None
    allow_fallback: bool = False
    policy: ResynthesisPolicy = field(default_factory=ResynthesisPolicy)
    input_fps: float | None = None  # frames offered at this rate; None: as fast as accepted
    drop: str = "block"  # block or keep-latest (runner.DROP_POLICIES)
    bases: str = "float32"  # presynth synthesis from float32 (exact) or int8 (compact) bases


@dataclass
class StageFigures:
    latency_ms: dict  # percentiles()
    init_ms: float | None = None  # session creation; None where not a session (synthesis)
    first_inference_ms: float | None = None
    with_session_recreation_ms: dict | None = None  # synthesis: + re-creating the session


@dataclass
class RunnerFigures:
    throughput_fps: float  # answered frames per second of wall time
    latency_ms: dict
    early_exit_rate: float
    avg_madds: int
    resyntheses: int | None
    peak_rss_mb: float
    dropped: int = 0  # keep-latest: frames never answered
    input_fps: float | None = None  # the offered rate; None: full load


@dataclass
class BenchReport:
    directory: str
    runtime: str
    delegate: str
    fallback: str | None
    threads: dict  # per stage, as chosen (stage_threads)
    frames: int
    warmup: int
    specialist_form: str
    bases: str  # presynth: which bases synthesis mixed
    threshold: float | None
    processors: dict
    stages: dict[str, StageFigures] = field(default_factory=dict)
    runners: dict[str, RunnerFigures] = field(default_factory=dict)
    early_exit_rate: float | None = None
    avg_madds: int | None = None
    full_pipeline_madds: int | None = None
    stage_bound_fps: float | None = None  # 1 / max(t_light, t_specialist)
    pipelined_vs_sequential: float | None = None
    specialist_vs_baseline_p50: float | None = None
    baseline_fps: float | None = None  # the plain network alone, frame after frame, same run
    vs_baseline_fps: dict = field(default_factory=dict)  # runner fps / baseline_fps, per runner
    warning: str | None = None  # e.g. an export forced through the agreement gate
    manifest_sha256: str | None = None  # of the export's manifest.json, so report can match them


@dataclass
class _Setup:
    dep: Deployment
    factory: object  # the specialist's session factory
    light_factory: object
    frames: list  # (LM input, specialist input) per frame


def bench(directory, options: BenchOptions = BenchOptions(), progress=None) -> BenchReport:
    """Per-stage and end-to-end figures for an export (module docstring)."""
    say = progress or (lambda msg: None)
    threads = stage_threads(options.threads)
    opts = dataclasses.replace(options, threads=threads["specialist"])
    setup = _setup(directory, opts, say)
    report = BenchReport(
        directory=str(directory), runtime=opts.runtime, delegate=opts.delegate,
        fallback=setup.factory.fallback_note, threads=threads, frames=opts.frames,
        warmup=opts.warmup, specialist_form=opts.form, bases=opts.bases,
        threshold=setup.dep.threshold if opts.threshold is None else opts.threshold,
        processors={"lightweight": setup.light_factory.processor,
                    "specialist": setup.factory.processor},
        manifest_sha256=sha256_hex((Path(directory) / MANIFEST_FILE).read_bytes()))
    report.warning = agreement_warning(setup.dep.manifest)
    _measure_stages(setup, opts, report, say)
    modes = ["sequential", "pipelined"] if opts.runner == "both" else [opts.runner]
    for mode in modes:
        say(f"end to end: {mode}")
        report.runners[mode] = _measure_runner(setup, opts, report.threshold, mode)
    first = report.runners[modes[0]]
    report.early_exit_rate, report.avg_madds = first.early_exit_rate, first.avg_madds
    report.full_pipeline_madds = setup.dep.cost()["madds"]
    bottleneck = max(report.stages["lightweight"].latency_ms["p50"],
                     report.stages["specialist"].latency_ms["p50"])
    report.stage_bound_fps = round(1000.0 / bottleneck, 2)
    if len(modes) == 2:
        report.pipelined_vs_sequential = ratio(report.runners["pipelined"].throughput_fps,
                                               report.runners["sequential"].throughput_fps)
    if report.baseline_fps:
        report.vs_baseline_fps = {m: ratio(r.throughput_fps, report.baseline_fps)
                                  for m, r in report.runners.items()}
    return report


def _setup(directory, opts: BenchOptions, say) -> _Setup:
    dep = Deployment(directory)
    wanted = "tflite" if opts.runtime == "litert" else "onnx"
    if dep.manifest.target != wanted:
        raise UserError(f"{directory} is a {dep.manifest.target} export; --runtime {opts.runtime} "
                        f"runs {wanted} exports")
    factory = make_factory(opts.runtime, opts.delegate, opts.threads, opts.delegate_path,
                           opts.allow_fallback, probe=str(dep.path(Role.LIGHTWEIGHT)))
    # The lightweight model stays on the CPU, as BasisNet is meant to run.
    light_factory = make_factory(opts.runtime, "xnnpack" if opts.delegate != "cpu" else "cpu", 1)
    imgs = _images(opts.images, dep, opts.frames)
    frames = [dep.frame(imgs[i % len(imgs)]) for i in range(opts.frames)]
    say(f"{len(frames)} frames from {len(imgs)} images")
    return _Setup(dep, factory, light_factory, frames)


def _measure_stages(setup: _Setup, opts: BenchOptions, report: BenchReport, say) -> None:
    """Per-stage figures: lightweight, specialist, synthesis (presynth), plain baseline."""
    dep, factory = setup.dep, setup.factory
    say("per-stage: lightweight")
    light_feeds = [{"image": f[0]} for f in setup.frames]
    report.stages["lightweight"] = _stage(setup.light_factory, dep.path(Role.LIGHTWEIGHT),
                                          light_feeds, opts.warmup)
    lm = setup.light_factory(dep.path(Role.LIGHTWEIGHT))
    coeffs = [np.asarray(lm.run(f)["coefficients"], np.float32)[0] for f in light_feeds]
    say(f"per-stage: specialist ({opts.form})")
    if opts.form == "coefficient":
        feeds = [{"image": f[1], "coefficients": c[None]} for f, c in zip(setup.frames, coeffs)]
        report.stages["specialist"] = _stage(factory, dep.path(Role.SPECIALIST_COEFFICIENT), feeds,
                                             opts.warmup)
    else:
        ps = dep.presynth()
        feeds = [{"image": f[1]} for f in setup.frames]
        model = synthesize(ps.template, ps.table, ps.bases, coeffs[0])
        report.stages["specialist"] = _stage(factory, ps.path, feeds, opts.warmup, model=model)
        say("per-stage: synthesis (+ session re-creation)")
        compact = dep.compact_bases() if opts.bases == "int8" else None
        report.stages["synthesis"] = _synthesis_stage(ps, factory, coeffs, compact)
    if Role.BASELINE_PLAIN in dep.artifacts:
        say("per-stage: plain baseline")
        feeds = [{"image": f[1]} for f in setup.frames]
        report.stages["baseline_plain"] = _stage(factory, dep.path(Role.BASELINE_PLAIN), feeds,
                                                 opts.warmup)
        report.specialist_vs_baseline_p50 = ratio(report.stages["specialist"].latency_ms["p50"],
                                                  report.stages["baseline_plain"].latency_ms["p50"])
        report.baseline_fps = _baseline_fps(factory, dep.path(Role.BASELINE_PLAIN), feeds)


def _baseline_fps(factory, path, feeds) -> float:
    """The plain network alone over every frame, one after another: the reference rate."""
    session = factory(path)
    session.run(feeds[0])
    t = time.perf_counter()
    for f in feeds:
        session.run(f)
    return round(len(feeds) / (time.perf_counter() - t), 2)


def _synthesis_stage(ps, factory, coeffs, compact=None) -> StageFigures:
    """One synthesis (mix + quantize + patch, and the bytes copy a session needs), as the
    runner's synthesis stage does it, then with the session re-created from it."""
    model_bytes = model_bytes_fn(ps, compact)
    synth, recreate = [], []
    for c in coeffs[: max(10, min(len(coeffs), 50))]:
        ms, model = _time_ms(lambda: model_bytes(c))
        synth.append(ms)
        ms2, _ = _time_ms(lambda: factory(ps.path, model))
        recreate.append(ms + ms2)
    return StageFigures(latency_ms=percentiles(synth), with_session_recreation_ms=percentiles(recreate))


def _measure_runner(setup: _Setup, opts: BenchOptions, threshold, mode: str) -> RunnerFigures:
    def runner():
        return TwoStageRunner(setup.dep, setup.light_factory, setup.factory,
                              RunnerOptions(threshold=threshold, form=opts.form, mode=mode,
                                            policy=opts.policy, drop=opts.drop, bases=opts.bases))
    warm = runner()
    list(warm.run(setup.frames[:opts.warmup]))  # warm-up pass, sessions and caches
    run = runner()
    t = time.perf_counter()
    results = list(run.run(_paced(setup.frames, opts.input_fps)))
    wall = time.perf_counter() - t
    exit_rate = float(np.mean([r.stage == "lightweight" for r in results]))
    return RunnerFigures(
        throughput_fps=round(len(results) / wall, 2),
        latency_ms=percentiles([r.latency_ms for r in results]),
        early_exit_rate=round(exit_rate, 4),
        avg_madds=int(expected_madds(setup.dep.cost(), exit_rate)),
        resyntheses=run.resyntheses if opts.form == "presynth" else None,
        peak_rss_mb=peak_rss_mb(), dropped=run.dropped, input_fps=opts.input_fps)


def _paced(frames, fps: float | None):
    """The frames, offered no faster than ``fps`` (a camera); all at once when None."""
    if not fps:
        yield from frames
        return
    start, period = time.perf_counter(), 1.0 / fps
    for i, frame in enumerate(frames):
        delay = start + i * period - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield frame


def _images(images, dep, count: int):
    """Up to ``count`` images (as many as the frames need): a seeded sample of a folder, of
    which only those are decoded, or the digits."""
    from basisnet_deploy.data import digits
    from basisnet_deploy.data.datasets import sample_folder

    if images in (None, "digits"):
        return digits().images[:count]
    return sample_folder(str(images), count, min_side=dep.decode_side).images
