"""``bench``: per-stage and end-to-end figures, every one measured in this run.

Per stage (lightweight, synthesis, specialist, and the plain baseline when exported), as
TFLite's ``benchmark_model`` reports them: init (session creation, with the delegate's
preparation: XNNPACK packs the weights there), first inference, then
latency percentiles over the frames after ``warmup``. End to end, for each runner:
throughput, per-frame latency percentiles (queueing included), early-exit rate, average MAdds
per frame (the manifest's cost model at the measured exit rate) and the process's peak RSS.

The stage-bound throughput is 1 / the slowest stage's time per input frame, in the first
runner measured: the lightweight model's p50; the specialist's p50 times the share of frames
that reach it (early exits skip it), a re-synthesized frame counting its new session's first
run (to first output minus re-create); and, for the pre-synthesized form (whose synthesis is
a pipeline stage of its own), synthesis with the session re-creation (p50) times the share of
frames re-synthesized. Each stage on its own core at its median time: an estimate of the
pipelined runner's ceiling, not a measurement; a run's timing noise can cross it (the
software GPU's on a shared machine does).
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from basisnet_deploy.artifacts.manifest import MANIFEST_FILE, Role, agreement_warning
from basisnet_deploy.artifacts.synthesis import synthesize
from basisnet_deploy.runtime.synthesizer import model_bytes_fn
from basisnet_deploy.common.answers import same_answer
from basisnet_deploy.common.errors import UserError
from basisnet_deploy.common.files import read_verified, sha256_hex
from basisnet_deploy.runtime.backends import make_factory, stage_threads
from basisnet_deploy.runtime.deployment import Deployment
from basisnet_deploy.runtime.gpu import GPU_TOLERANCE, relative_error
from basisnet_deploy.runtime.predict import default_form
from basisnet_deploy.runtime.runner import ResynthesisPolicy, RunnerOptions, TwoStageRunner, exit_threshold


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
    _release(factory, session)
    return StageFigures(latency_ms=percentiles(lat), init_ms=round(init_ms, 3),
                        first_inference_ms=round(first_ms, 3))


def _release(factory, session) -> None:
    release = getattr(factory, "release", None)
    if release is not None:
        release(session)


@dataclass(frozen=True)
class BenchOptions:
    """What ``bench`` measures; the CLI's flags map one to one."""

    delegate: str = "xnnpack"
    runtime: str = "litert"
    runner: str = "both"  # sequential, pipelined or both
    form: str | None = None  # specialist form: presynth or coefficient; None: the delegate's
    gpu_check_frames: int = 50  # --delegate gpu: frames also run on the CPU to compare
    threshold: float | None = None  # None: the manifest's; runner.NEVER_EXIT: never exit
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
    to_first_output_ms: dict | None = None  # synthesis: + re-creating + the first invoke


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
    specialist_frames: int = 0  # frames the specialist answered (no early exit)
    answered: int = 0  # frames answered in all (keep-latest drops the rest)


@dataclass
class GpuFigures:
    """The GPU that ran the specialist, and how its outputs compare with the CPU's."""

    adapter: str | None  # as the accelerator names it
    software: bool  # a CPU emulating a GPU (SwiftShader): its timings are not a GPU's
    form_reason: str  # why this specialist form runs on the GPU
    frames_compared: int = 0
    top1_agreement: float | None = None  # GPU's argmax == CPU's (XNNPACK), same frames
    max_rel: float | None = None  # max |GPU - CPU| logit / max |CPU| logit
    compile_ms: float | None = None  # the up-front check's first compile (device + shaders)
    within_tolerance: bool | None = None  # max_rel <= runtime.gpu.GPU_TOLERANCE (None: NaN/inf: False)


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
    stage_bound_fps: float | None = None  # 1000 / max(stage_bound_ms.values())
    # per stage, ms per frame that reaches it: lightweight and specialist p50; presynth's
    # synthesis: p50 with the session re-creation x the share of frames re-synthesized
    stage_bound_ms: dict = field(default_factory=dict)
    stage_bound_by: str | None = None  # the slowest stage of stage_bound_ms
    pipelined_vs_sequential: float | None = None
    specialist_vs_baseline_p50: float | None = None
    baseline_fps: float | None = None  # the plain network alone, frame after frame, same run
    vs_baseline_fps: dict = field(default_factory=dict)  # runner fps / baseline_fps, per runner
    warning: str | None = None  # e.g. an export forced through the agreement gate
    manifest_sha256: str | None = None  # of the export's manifest.json, so report can match them
    gpu: GpuFigures | None = None  # --delegate gpu (LiteRT): the device and its agreement with the CPU
    images: int | None = None  # distinct images the frames cycle through
    # --images DIR: its unreadable files, as verify and evaluate report them
    skipped: dict = field(default_factory=lambda: {"count": 0, "by_reason": {}, "first": []})


@dataclass
class _Setup:
    dep: Deployment
    factory: object  # the specialist's session factory
    light_factory: object
    frames: list  # (LM input, specialist input) per frame
    images: int = 0  # distinct images behind the frames
    skipped: dict = field(default_factory=dict)  # {"count", "by_reason", "first"}


def bench(directory, options: BenchOptions = BenchOptions(), progress=None,
          deployment: Deployment | None = None) -> BenchReport:
    """Per-stage and end-to-end figures for an export (module docstring). ``deployment``: the
    export at ``directory`` already opened (read and checked), which is then not read again."""
    say = progress or (lambda msg: None)
    dep = deployment or Deployment(directory)
    threads = stage_threads(options.threads)
    form = options.form or default_form(options.delegate, dep)
    opts = dataclasses.replace(options, threads=threads["specialist"], form=form)
    setup = _setup(dep, opts, say)
    report = BenchReport(
        directory=str(directory), runtime=opts.runtime, delegate=opts.delegate,
        fallback=None, threads=threads, frames=opts.frames,  # fallback, processors: after the runs
        warmup=opts.warmup, specialist_form=opts.form, bases=opts.bases,
        threshold=exit_threshold(opts.threshold, setup.dep.threshold),
        processors={}, images=setup.images, skipped=setup.skipped,
        manifest_sha256=sha256_hex(read_verified(directory, MANIFEST_FILE, what="manifest")))
    report.warning = agreement_warning(setup.dep.manifest)
    try:
        _measure_stages(setup, opts, report, say)
        if setup.factory.gpu_verdict is not None:
            report.gpu = _gpu_figures(setup, opts, options.form is None, say)
        modes = ["sequential", "pipelined"] if opts.runner == "both" else [opts.runner]
        for mode in modes:
            say(f"end to end: {mode} ({len(setup.frames)} frames)")
            report.runners[mode] = _measure_runner(setup, opts, report.threshold, mode, say)
    finally:
        setup.factory.close()
    # after the runs: whether XNNPACK took a model's ops (so what ran) is known once it is prepared
    report.processors = {"lightweight": setup.light_factory.processor, "specialist": setup.factory.processor}
    report.fallback = setup.factory.fallback_note
    first = report.runners[modes[0]]
    report.early_exit_rate, report.avg_madds = first.early_exit_rate, first.avg_madds
    report.full_pipeline_madds = setup.dep.cost().madds
    _stage_bound(report, first)
    if len(modes) == 2:
        report.pipelined_vs_sequential = ratio(report.runners["pipelined"].throughput_fps,
                                               report.runners["sequential"].throughput_fps)
    if report.baseline_fps:
        report.vs_baseline_fps = {m: ratio(r.throughput_fps, report.baseline_fps)
                                  for m, r in report.runners.items()}
    return report


def _stage_bound(report: BenchReport, run: RunnerFigures) -> None:
    """The stage-bound throughput and each stage's part in it, in ms per input frame (module
    docstring): the synthesis stage, where the runner has one, counts with its session
    re-creation; the later stages count only the frames that reach them."""
    frames = max(run.answered, 1)
    reach = run.specialist_frames / frames  # early exits skip the later stages
    specialist = report.stages["specialist"].latency_ms["p50"] * reach
    per_frame = {"lightweight": report.stages["lightweight"].latency_ms["p50"]}
    synthesis = report.stages.get("synthesis")
    if synthesis is not None and synthesis.with_session_recreation_ms:
        resynthesized = min(run.resyntheses or 0, run.specialist_frames) / frames
        recreate = synthesis.with_session_recreation_ms["p50"]
        per_frame["synthesis"] = round(recreate * resynthesized, 4)
        if synthesis.to_first_output_ms:  # a re-synthesized frame is its new session's first run
            first_run = max(synthesis.to_first_output_ms["p50"] - recreate, 0.0)
            p50 = report.stages["specialist"].latency_ms["p50"]
            specialist = p50 * (reach - resynthesized) + first_run * resynthesized
    per_frame["specialist"] = round(specialist, 4)
    report.stage_bound_ms = {k: per_frame[k] for k in ("lightweight", "synthesis", "specialist")
                             if k in per_frame}
    report.stage_bound_by = max(report.stage_bound_ms, key=report.stage_bound_ms.get)
    report.stage_bound_fps = round(1000.0 / report.stage_bound_ms[report.stage_bound_by], 2)


def _setup(dep: Deployment, opts: BenchOptions, say) -> _Setup:
    if dep.manifest.runtime != opts.runtime:
        raise UserError(f"{dep.directory} is a {dep.manifest.target} export, which "
                        f"{dep.manifest.runtime} runs; pass --runtime {dep.manifest.runtime}")
    if opts.delegate == "gpu":
        say(f"checking {dep.specialist_path(opts.form).name} on the GPU (compile, run, compare with the CPU)")
    factory = make_factory(opts.runtime, opts.delegate, opts.threads, opts.delegate_path,
                           opts.allow_fallback, probe=str(dep.specialist_path(opts.form)),
                           probe_model=dep.specialist_model(opts.form))
    # The lightweight model stays on the CPU, as BasisNet is meant to run.
    light_factory = make_factory(opts.runtime, "xnnpack" if opts.delegate != "cpu" else "cpu", 1)
    imgs, skipped = _images(opts.images, dep, opts.frames)
    frames = [dep.frame(imgs[i % len(imgs)]) for i in range(opts.frames)]
    say(f"{len(frames)} frames from {len(imgs)} images"
        + (f" ({skipped['count']} unreadable files skipped)" if skipped["count"] else ""))
    return _Setup(dep, factory, light_factory, frames, len(imgs), skipped)


def _measure_stages(setup: _Setup, opts: BenchOptions, report: BenchReport, say) -> None:
    """Per-stage figures: lightweight, specialist, synthesis (presynth), plain baseline."""
    dep, factory = setup.dep, setup.factory
    say("per-stage: lightweight")
    light_feeds = [{"image": f[0]} for f in setup.frames]
    report.stages["lightweight"] = _stage(setup.light_factory, dep.path(Role.LIGHTWEIGHT),
                                          light_feeds, opts.warmup, model=dep.model(Role.LIGHTWEIGHT))
    lm = dep.session(setup.light_factory, Role.LIGHTWEIGHT)
    coeffs = [np.asarray(lm.run(f)["coefficients"], np.float32)[0] for f in light_feeds]
    say(f"per-stage: specialist ({opts.form})")
    if opts.form == "coefficient":
        feeds = [{"image": f[1], "coefficients": c[None]} for f, c in zip(setup.frames, coeffs)]
        report.stages["specialist"] = _stage(factory, dep.path(Role.SPECIALIST_COEFFICIENT), feeds,
                                             opts.warmup, model=dep.model(Role.SPECIALIST_COEFFICIENT))
    else:
        ps = dep.presynth()
        feeds = [{"image": f[1]} for f in setup.frames]
        model = synthesize(ps.template, ps.table, ps.bases, coeffs[0])
        report.stages["specialist"] = _stage(factory, ps.path, feeds, opts.warmup, model=model)
        say("per-stage: synthesis (+ session re-creation)")
        compact = dep.compact_bases() if opts.bases == "int8" else None
        report.stages["synthesis"] = _synthesis_stage(ps, factory, coeffs, feeds[0], compact)
    if Role.BASELINE_PLAIN in dep.artifacts:
        say("per-stage: plain baseline")
        feeds = [{"image": f[1]} for f in setup.frames]
        report.stages["baseline_plain"] = _stage(factory, dep.path(Role.BASELINE_PLAIN), feeds,
                                                 opts.warmup, model=dep.model(Role.BASELINE_PLAIN))
        report.specialist_vs_baseline_p50 = ratio(report.stages["specialist"].latency_ms["p50"],
                                                  report.stages["baseline_plain"].latency_ms["p50"])
        report.baseline_fps = _baseline_fps(dep.session(factory, Role.BASELINE_PLAIN), feeds)


def _baseline_fps(session, feeds) -> float:
    """The plain network alone over every frame, one after another: the reference rate."""
    session.run(feeds[0])
    t = time.perf_counter()
    for f in feeds:
        session.run(f)
    return round(len(feeds) / (time.perf_counter() - t), 2)


def _synthesis_stage(ps, factory, coeffs, feeds, compact=None) -> StageFigures:
    """One synthesis (mix + quantize + patch, and the bytes copy a session needs), as the
    runner's synthesis stage does it, then with the session re-created from it, then to the
    first output of that session on ``feeds`` (a frame's inputs)."""
    model_bytes = model_bytes_fn(ps, compact)
    synth, recreate, first = [], [], []
    for c in coeffs[: max(10, min(len(coeffs), 50))]:
        ms, model = _time_ms(lambda: model_bytes(c))
        synth.append(ms)
        ms2, session = _time_ms(lambda: factory(ps.path, model))
        recreate.append(ms + ms2)
        ms3, _ = _time_ms(lambda: session.run(feeds))
        first.append(ms + ms2 + ms3)
        _release(factory, session)
    return StageFigures(latency_ms=percentiles(synth), with_session_recreation_ms=percentiles(recreate),
                        to_first_output_ms=percentiles(first))


def _measure_runner(setup: _Setup, opts: BenchOptions, threshold, mode: str, say=None) -> RunnerFigures:
    def runner():
        return TwoStageRunner(setup.dep, setup.light_factory, setup.factory,
                              RunnerOptions(threshold=threshold, form=opts.form, mode=mode,
                                            policy=opts.policy, drop=opts.drop, bases=opts.bases))
    warm = runner()
    list(warm.run(setup.frames[:opts.warmup]))  # warm-up pass, sessions and caches
    run = runner()
    t = time.perf_counter()
    results = list(_reporting(run.run(_paced(setup.frames, opts.input_fps)), len(setup.frames), mode, say))
    wall = time.perf_counter() - t
    exit_rate = float(np.mean([r.stage == "lightweight" for r in results]))
    specialist_frames = sum(r.stage == "specialist" for r in results)
    return RunnerFigures(
        throughput_fps=round(len(results) / wall, 2),
        latency_ms=percentiles([r.latency_ms for r in results]),
        early_exit_rate=round(exit_rate, 4),
        avg_madds=int(setup.dep.cost().expected_madds(exit_rate)),
        resyntheses=run.resyntheses if opts.form == "presynth" else None,
        peak_rss_mb=peak_rss_mb(), dropped=run.dropped, input_fps=opts.input_fps,
        specialist_frames=specialist_frames, answered=len(results))


PROGRESS_EVERY_S = 5.0


def _reporting(results, total: int, mode: str, say, every_s: float = PROGRESS_EVERY_S):
    """The runner's results, passed through; every ``every_s`` seconds ``say`` hears how far it
    is, at what rate, and how long is left (a slow device: a software GPU, a phone)."""
    started = last = time.perf_counter()
    for done, result in enumerate(results, 1):
        yield result
        now = time.perf_counter()
        if say and now - last >= every_s and done < total:
            rate = done / (now - started)
            say(f"{mode}: {done}/{total} frames, {rate:.1f} fps, about {(total - done) / rate:.0f} s left")
            last = now


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


def _images(images, dep, count: int, keep: int = 5) -> tuple[list, dict]:
    """Up to ``count`` images (as many as the frames need): a seeded sample of a folder, of
    which only those are decoded, or the digits; and the folder's unreadable files met on the
    way, as verify reports them ({"count", "by_reason", "first"}: the first ``keep`` named)."""
    from basisnet_deploy.data import digits
    from basisnet_deploy.data.datasets import sample_folder

    if images in (None, "digits"):
        return digits().images[:count], {"count": 0, "by_reason": {}, "first": []}
    sample = sample_folder(str(images), count, min_side=dep.decode_side)
    return sample.images, {"count": sum(sample.skipped.values()),
                           "by_reason": dict(sorted(sample.skipped.items())),
                           "first": list(sample.skipped_files[:keep])}


GPU_FORM_REASON = {
    "coefficient": "the coefficient-input specialist: synthesis runs inside the graph on the GPU, "
                   "one compiled model for every frame",
    "presynth": "the pre-synthesized template: each re-synthesis is a new model for the GPU, "
                "compiled again (the synthesis stage's 'to first output' figure)",
}


def _gpu_figures(setup: _Setup, opts: BenchOptions, form_chosen: bool, say) -> GpuFigures:
    """The GPU's specialist outputs against the CPU's (XNNPACK) on the first frames run."""
    from basisnet_deploy.runtime.backends import BackendFactory

    verdict = setup.factory.gpu_verdict
    reason = GPU_FORM_REASON[opts.form] + ("" if not form_chosen or opts.form != "coefficient"
                                           else " (the default on the GPU)")
    figures = GpuFigures(adapter=verdict.adapter, software=is_software_gpu(verdict.adapter),
                         form_reason=reason, compile_ms=verdict.compile_ms)
    frames = setup.frames[:max(1, opts.gpu_check_frames)]
    say(f"comparing the GPU's specialist outputs with the CPU's on {len(frames)} frames")
    cpu = BackendFactory(opts.runtime, "xnnpack", opts.threads)
    lm = setup.dep.session(setup.light_factory, Role.LIGHTWEIGHT)
    path = setup.dep.specialist_path(opts.form)
    gpu_session = setup.factory(path, _specialist_model(setup, opts, lm, frames[0]))
    cpu_session = cpu(path, _specialist_model(setup, opts, lm, frames[0]))
    agree, worst = 0, 0.0
    for frame in frames:
        feeds = _specialist_feeds(opts.form, lm, frame)
        ref = np.asarray(cpu_session.run(feeds)["logits"], np.float32)
        got = np.asarray(gpu_session.run(feeds)["logits"], np.float32)
        agree += same_answer(ref, got)
        worst = max(worst, relative_error(ref, got))
    _release(setup.factory, gpu_session)
    figures.frames_compared = len(frames)
    figures.top1_agreement = round(agree / len(frames), 6)
    figures.max_rel = float(f"{worst:.3g}") if np.isfinite(worst) else None
    figures.within_tolerance = bool(worst <= GPU_TOLERANCE)
    return figures


def _specialist_feeds(form: str, lm, frame) -> dict:
    if form == "coefficient":
        coefficients = np.asarray(lm.run({"image": frame[0]})["coefficients"], np.float32)
        return {"image": frame[1], "coefficients": coefficients}
    return {"image": frame[1]}


def _specialist_model(setup: _Setup, opts: BenchOptions, lm, frame) -> bytes:
    """Presynth: the template synthesized for the first frame's coefficients (the comparison
    runs that one model on both processors); coefficient-input: its checked bytes."""
    if opts.form == "coefficient":
        return setup.dep.model(Role.SPECIALIST_COEFFICIENT)
    ps = setup.dep.presynth()
    coefficients = np.asarray(lm.run({"image": frame[0]})["coefficients"], np.float32)[0]
    return synthesize(ps.template, ps.table, ps.bases, coefficients)


def is_software_gpu(adapter: str | None) -> bool:
    """Whether the accelerator's adapter is a CPU emulating a GPU (SwiftShader, llvmpipe)."""
    return bool(adapter) and any(word in adapter for word in ("SwiftShader", "CPU / Software", "llvmpipe",
                                                              "software adapter"))
