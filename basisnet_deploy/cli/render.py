"""The one output renderer of the CLI: tables for people, JSON for scripts, the same everywhere.

Every command ends in :func:`emit`: with ``--json`` the result goes to stdout as one JSON
document; otherwise the command's text view prints it. ``--json-out FILE`` writes the same
JSON to a file (atomically) in either case. Results may be dataclasses, enums, paths or NumPy
scalars: :func:`~basisnet_deploy.common.jsonable.jsonable` turns them into plain JSON values.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import click

from basisnet_deploy.common.errors import UserError
from basisnet_deploy.common.files import write_json_atomically
from basisnet_deploy.common.jsonable import dumps, jsonable


def emit(result, as_json: bool, json_out: str | None, text: Callable[[object], list[str]]) -> None:
    """Render ``result`` once: JSON on stdout or the text view, plus ``--json-out``."""
    doc = jsonable(result)
    if json_out:
        try:
            write_json_atomically(Path(json_out), doc)
        except OSError as e:
            raise UserError(f"--json-out {json_out}: cannot write it ({e.strerror or e})") from None
    if as_json:
        click.echo(dumps(doc))
        return
    for line in text(result):
        click.echo(line)


def fmt_m(n) -> str:
    """Millions, for MAdds and parameter counts."""
    return f"{n / 1e6:,.2f}M"


def fmt_ms(v, width: int = 10, digits: int = 3) -> str:
    """A latency cell; a figure not measured in this run prints as '-', never 'nan'."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return f"{'-':>{width}}"
    return f"{v:>{width}.{digits}f}"


# Text views: one per result kind, each a list of lines.

def cost_text(result: dict) -> list[str]:
    if "network" in result:
        n = result["network"]
        return [f"{n['arch']} {n['width']}x{n['resolution']}, {n['classes']} classes",
                f"  MAdds {fmt_m(result['madds'])}   params {fmt_m(result['params'])}"]
    a = result["architecture"]
    lines = [f"BasisNet-{a['backbone'].upper()}: K={a['bases']}, non-shared "
             f"L{a['nonshared'][0]}-L{a['nonshared'][1]}, specialist {a['width']}x"
             f"{a['resolution']}, LM {a['light_width']}x{a['light_resolution']}, "
             f"{a['num_classes']} classes",
             f"  {'stage':<14}{'MAdds':>12}{'params':>12}"]
    for name, st in result["stages"].items():
        lines.append(f"  {name:<14}{fmt_m(st['madds']):>12}{fmt_m(st['params']):>12}")
    lines.append(f"  {'pipeline':<14}{fmt_m(result['madds']):>12}{fmt_m(result['params']):>12}")
    return lines


def train_text(result) -> list[str]:
    """The text view of a :class:`~basisnet_deploy.training.trainer.TrainingSummary`."""
    held = result.held_out
    return [*(init["summary"] for init in result.init_from or ()),
            f"trained {result.steps} steps in {result.train_seconds:.0f} s on "
            f"{result.train_examples} images",
            f"held-out top-1 ({held['examples']} images): lightweight "
            f"{held['lightweight_top1']:.1%}, specialist {held['specialist_top1']:.1%}",
            f"checkpoint written to {result.checkpoint}"]


def evaluate_text(r) -> list[str]:
    lines = [f"{r.dataset} ({r.split}, {r.examples} images): lightweight "
             f"top-1 {r.lightweight_top1:.1%}, specialist top-1 {r.specialist_top1:.1%}"]
    if r.skipped:
        more = r.skipped - len(r.skipped_files)
        lines.append(f"skipped {r.skipped} unreadable files: " + ", ".join(r.skipped_files)
                     + (f" and {more} more" if more > 0 else ""))
    return lines


def export_text(manifest) -> list[str]:
    lines = [f"exported in {manifest.record.export_seconds:.0f} s"]
    for entry in manifest.artifacts.values():
        gpu = entry.details.get("gpu")
        gpu_txt = "" if gpu is None else f"  GPU: {gpu_summary(gpu)}"
        lines.append(f"  {entry.file:<30} {entry.bytes / 1e6:7.2f} MB  "
                     f"{entry.quantization.value}{gpu_txt}")
    return lines + verification_text(manifest.record.verification)


def verify_text(result) -> list[str]:
    """``verify``'s view of a :class:`~basisnet_deploy.export.verify.VerificationResult`."""
    return verification_text(result.to_json())


def verification_text(v: dict) -> list[str]:
    """A verification as JSON (``verify``'s result, or the manifest's record) as a table."""
    lines = [f"FALLBACK: {v['fallback']}"] if v.get("fallback") else []
    lines += [f"specialists on: {v['specialist_processor']}"] if "specialist_processor" in v else []
    lines += [f"verification against the float TF model ({v['images']} {v['source']} images):",
             f"  {'artifact':<42}{'top-1 agree':>12}{'accuracy':>10}{'max rel err':>13}"]

    checks = _checks(v)
    for name, s in checks:
        acc = f"{s['accuracy']:.1%}" if "accuracy" in s else "-"
        lines.append(f"  {name:<42}{s['top1_agreement']:>12.1%}{acc:>10}{_err(s['logits']['max_rel']):>13}")
    c = v["lightweight"]["coefficients"]
    lines.append(f"  lightweight coefficients: max abs err {_err(c['max_abs'])}, mean {_err(c['mean_abs'])}")
    lines += _tie_lines(checks)
    if "presynth_vs_coefficient" in v:
        lines.append(f"  presynth vs coefficient-input, same coefficients: max rel diff "
                     f"{_err(v['presynth_vs_coefficient']['max_rel'])}")
    lines += _non_finite_lines(v, checks)
    counts = v.get("classes") or {}
    if 0 < len(counts) <= 12:
        lines.append("  images per class: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
    elif counts:
        lines.append(f"  images per class: {len(counts)} classes, "
                     f"{min(counts.values())}-{max(counts.values())} each")
    return lines + _skipped_lines(v)


def _checks(v: dict) -> list[tuple[str, dict]]:
    """The verification's checks in table order, each with its row name: the LM, then each
    specialist fed the float LM's coefficients and end to end."""
    checks = [("lightweight", v["lightweight"])]
    for role in ("specialist_coefficient", "specialist_presynth"):
        if role in v:
            checks += [(f"{role} (float LM coeffs)", v[role]["isolated"]),
                       (f"{role} (end to end)", v[role]["end_to_end"])]
    return checks


def _tie_lines(checks: list[tuple[str, dict]]) -> list[str]:
    """Where an artifact disagrees with float: the largest float-logit gap between the float
    answer and the artifact's among those images, against the median float top-two gap,
    which tells near ties from changed clear answers."""
    parts = [f"    {name}: {t['disagreeing']} image(s), gap <= {_gap(t['disagreeing_max_gap'])} "
             f"(median {_gap(t['median_gap'])})"
             for name, s in checks if (t := s.get("ties")) and t["disagreeing"]]
    if not parts:
        return []
    return ["  float logit gap, float answer minus the artifact's, where they differ "
            "(median top-two gap over all images):"] + parts


def _err(value: float | None) -> str:
    """An error figure; None (or NaN, in a record that holds a bare NaN) means the outputs
    held NaN or infinite values, which no number describes."""
    return "non-finite" if value is None or not math.isfinite(value) else f"{value:.2e}"


def _non_finite_lines(v: dict, checks: list[tuple[str, dict]]) -> list[str]:
    """'WARNING: ... gave N NaN or infinite values' for each output that did."""
    outputs = [(f"{name} logits", s["logits"]) for name, s in checks]
    outputs += [("lightweight coefficients", v["lightweight"]["coefficients"])]
    if "presynth_vs_coefficient" in v:
        outputs += [("presynth vs coefficient-input logits", v["presynth_vs_coefficient"])]
    return [f"  WARNING: {what}: {e['non_finite']} NaN or infinite value(s), from the artifact "
            f"or the float model; no error figure describes them"
            for what, e in outputs if e.get("non_finite")]


def _gap(value: float | None) -> str:
    return "n/a (non-finite logits)" if value is None else f"{value:.3g}"


def _skipped_lines(result: dict) -> list[str]:
    """'skipped 2 unreadable files (not an image: 1, truncated: 1): a.txt, b.jpg', if any."""
    skipped = result.get("skipped") or {}
    if not skipped.get("count"):
        return []
    reasons = ", ".join(f"{k}: {n}" for k, n in skipped["by_reason"].items())
    return [f"  skipped {skipped['count']} unreadable files ({reasons}): " + ", ".join(skipped["first"])]


def gpu_summary(gpu: dict) -> str:
    """A GPU verdict (runtime/gpu.py GpuVerdict JSON) in a few words."""
    if gpu.get("status") is None:
        return f"n/a ({gpu['reason']})"
    from basisnet_deploy.runtime.gpu import GpuVerdict

    return GpuVerdict.from_json(gpu).summary()


def check_text(report) -> list[str]:
    lines = [f"WARNING: {report.warning}"] if report.warning else []
    adapters = {c.gpu.get("adapter") for c in report.artifacts.values()} - {None}
    if adapters:
        lines.append(f"GPU: {', '.join(sorted(adapters))}")
    for role, c in report.artifacts.items():
        lines.append(f"  {role.value:<24} sha256 ok   GPU: {gpu_summary(c.gpu)}")
        lines += [f"      {op}" for op in c.gpu.get("unsupported_ops") or []]
        if c.gpu_at_export:
            where = c.gpu_at_export.get("adapter") or "a GPU"
            lines.append(f"      at export, on {where}: {gpu_summary(c.gpu_at_export)}")
            lines += [f"        {op}" for op in c.gpu_at_export.get("unsupported_ops") or []]
    return lines


def android_text(report) -> list[str]:
    lines = [f"wrote {report.out} from {report.source}:"]
    lines += [f"  {name:<32} {size / 1e6:8.2f} MB" for name, size in report.files.items()]
    return lines + [f"  {'total':<32} {report.total_bytes / 1e6:8.2f} MB"]


def bench_text(r) -> list[str]:
    th = r.threads
    asked = f"{r.delegate} (not run: see FALLBACK)" if r.fallback else r.delegate
    lines = [f"{r.runtime} / delegate {asked} / threads: LM {th['lightweight']}, synthesis "
             f"{th['synthesis']}, specialist {th['specialist']} ({th['cores']} cores) / specialist "
             f"{r.specialist_form} / {_exit_label(r.threshold)}"]
    lines += [f"  {label}: {text}" for label, text in (("WARNING", r.warning), ("FALLBACK", r.fallback)) if text]
    lines.append(f"  processors: lightweight {r.processors['lightweight']}, "
                 f"specialist {r.processors['specialist']}")
    if r.images is not None:
        lines.append(f"  {r.frames} frames from {r.images} images")
    lines += _skipped_lines({"skipped": r.skipped})
    lines += gpu_bench_lines(r.gpu)
    lines.append(f"  {'stage':<16}{'init ms':>10}{'first ms':>10}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}")
    for name, st in r.stages.items():
        lat = st.latency_ms
        lines.append(f"  {name:<16}{fmt_ms(st.init_ms, 10, 2)}{fmt_ms(st.first_inference_ms, 10, 2)}"
                     f"{fmt_ms(lat['p50'])}{fmt_ms(lat['p90'])}{fmt_ms(lat['p99'])}")
        extras = (("  + re-create", st.with_session_recreation_ms), ("  + first run", st.to_first_output_ms))
        lines += [f"  {label:<16}{'':>20}{fmt_ms(ms['p50'])}" for label, ms in extras if ms]
    lines.append(f"  {'runner':<12}{'fps':>9}{'p50 ms':>9}{'p99 ms':>9}{'exit':>8}{'avg MAdds':>12}"
                 f"{'resynth':>9}{'dropped':>9}{'peak RSS':>10}")
    for name, x in r.runners.items():
        resynth = "-" if x.resyntheses is None else str(x.resyntheses)
        lines.append(f"  {name:<12}{x.throughput_fps:>9.1f}{fmt_ms(x.latency_ms['p50'], 9)}"
                     f"{fmt_ms(x.latency_ms['p99'], 9)}{x.early_exit_rate:>8.1%}"
                     f"{x.avg_madds / 1e6:>11.2f}M{resynth:>9}{x.dropped:>9}{x.peak_rss_mb:>8.0f}MB")
    synth = r.stage_bound_ms.get("synthesis")
    terms = "t_light, t_synthesis, t_specialist" if synth is not None else "t_light, t_specialist"
    lines.append(f"  stage-bound throughput 1/max({terms}): {r.stage_bound_fps:.1f} fps, bound by "
                 f"{r.stage_bound_by} (each stage on its own core at its median: an "
                 "estimate of the pipelined runner's ceiling, not a measurement)")
    first = next(iter(r.runners.values()))
    synth_text = ("" if synth is None else
                  f"synthesis + re-create {r.stages['synthesis'].with_session_recreation_ms['p50']:.3f} x "
                  f"{first.resyntheses}/{first.answered} frames re-synthesized = {synth:.3f}, ")
    lines.append(f"    ms per input frame: lightweight {r.stage_bound_ms['lightweight']:.3f}, {synth_text}"
                 f"specialist {r.stage_bound_ms['specialist']:.3f} ({first.specialist_frames}/"
                 f"{first.answered} frames reach it)")
    if r.pipelined_vs_sequential is not None:
        lines.append(f"  pipelined / sequential throughput: {r.pipelined_vs_sequential:.2f}x")
    if r.specialist_vs_baseline_p50 is not None:
        lines.append(f"  specialist / plain baseline latency (p50): {r.specialist_vs_baseline_p50:.2f}x")
    if r.baseline_fps:
        ratios = ", ".join(f"{m} {v:.2f}x" for m, v in r.vs_baseline_fps.items())
        lines.append(f"  plain baseline alone: {r.baseline_fps:.1f} fps; BasisNet / plain: {ratios}")
    if any(x.input_fps for x in r.runners.values()):
        lines.append(f"  frames offered at {next(iter(r.runners.values())).input_fps:g} fps (a camera)")
    return lines


def gpu_bench_lines(g) -> list[str]:
    if g is None:
        return []
    lines = [f"  GPU: {g.adapter or 'unnamed device'}; specialist form: {g.form_reason}"]
    if g.software:
        lines.append("  NOTE: a software GPU (a CPU emulating one): its op support and generated "
                     "shaders are the accelerator's; its precision and timings are not a GPU's")
    if g.top1_agreement is not None:
        err = "NaN or infinite outputs" if g.max_rel is None else f"max rel logit err {g.max_rel:.1e}"
        compile_ms = "" if g.compile_ms is None else f"; first compile {g.compile_ms:.0f} ms"
        lines.append(f"  GPU vs CPU specialist on {g.frames_compared} frames: top-1 agreement "
                     f"{g.top1_agreement:.1%}, {err}{compile_ms}")
        if not g.within_tolerance:
            lines.append("  WARNING: the GPU's outputs differ from the CPU's beyond the tolerance: "
                         "the GPU miscomputes this specialist")
    return lines


def predict_text(predictions) -> list[str]:
    notes = sorted({f"FALLBACK: {p.fallback}" for p in predictions if p.fallback})
    return notes + [f"{p.image}: {p.name} ({p.confidence:.1%}) answered by the {p.stage}"
                    for p in predictions]


def _exit_label(threshold: float | None, digits: str = ".4g") -> str:
    return "never exit" if threshold is None else f"threshold {threshold:{digits}}"


def threshold_text(r) -> list[str]:
    chosen = r.chosen
    cut = 1 - chosen.avg_madds / r.full_madds
    label = _exit_label(chosen.threshold, ".4f")
    replaced = ([f"replaces the {_exit_label(r.replaced['threshold'])} calibrated on "
                 f"{r.replaced['calibrated_on']} images"] if r.replaced else [])
    return replaced + [f"{r.source}, {r.images} images: never exiting gives "
            f"{r.no_exit_accuracy:.2%} top-1 at {r.full_madds / 1e6:.2f}M MAdds",
            f"{label}: {chosen.accuracy:.2%} top-1 "
            f"({(chosen.accuracy - r.no_exit_accuracy) * 100:+.2f} points), exit rate "
            f"{chosen.exit_rate:.1%}, {chosen.avg_madds / 1e6:.2f}M average MAdds ({cut:.1%} cut)",
            f"written to {r.manifest}; trade-off plot: {r.plot}"] + _skipped_lines(r.to_json())


def report_text(r) -> list[str]:
    e, health = r.early_exit, r.basis_health
    label = _exit_label(e.threshold, ".4f")
    lines = [f"report of {r.export} on {r.images.count} images ({r.images.source}) "
             f"in {r.seconds:.1f} s: {Path(r.out) / r.files.page}"]
    for b in r.specialization.bases:
        top = ", ".join(f"{c['name']} ({c['mean_coefficient']:.2f})" for c in b.classes)
        lines.append(f"  {r.specialization.block} basis {b.basis}: {top}")
    lines.append(f"  similar classes ({r.similar_classes.chosen_by}): "
                 f"{', '.join(r.similar_classes.classes)}")
    unused = ", ".join(f"{u['block']}/{u['basis']}" for u in health.unused) or "none"
    lines.append(f"  unused bases (never the largest): {unused}")
    lines.append(f"  {label}: top-1 {e.at_threshold['accuracy']:.1%}, exit rate "
                 f"{e.at_threshold['exit_rate']:.1%}, {fmt_m(e.at_threshold['avg_madds'])} avg MAdds")
    for role, s in r.fidelity.fresh.items():
        if "accuracy" in s:
            lines.append(f"  {role:<24} top-1 {s['accuracy']:.1%}")
    return lines
