"""``report``: one self-contained HTML page on what the bases learned and what the deployment
costs, plus its PNGs and a JSON of every number it shows.

The page is computed from one fresh run of the exported artifacts on labelled images (the
lightweight model and each exported specialist form, driven by the exported LM's
coefficients) and from the manifest (its cost model, early-exit record and stored
verification against the float model); an optional ``bench`` JSON adds measured latencies.
No TensorFlow: the float reference is not re-run here, the manifest's verification table is
shown as stored.

The output folder is written atomically; an existing ``--out`` is replaced only when it holds
the :data:`MARKER` file of a previous report.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from basisnet_deploy.artifacts.manifest import MANIFEST_FILE, Role, StageCost
from basisnet_deploy.common.errors import UserError
from basisnet_deploy.common.files import REPORT_MARKER, read_verified, sha256_hex, staged_directory
from basisnet_deploy.common.jsonable import dumps, jsonable, jsonable_fields
from basisnet_deploy.data.heldout import HeldOut
from basisnet_deploy.report import analysis, plots
from basisnet_deploy.report.html import render_page

MARKER = REPORT_MARKER
PAGE_FILE, JSON_FILE = "index.html", "report.json"
SPECIALISTS = (Role.SPECIALIST_PRESYNTH, Role.SPECIALIST_COEFFICIENT)


@dataclass(frozen=True)
class ReportOptions:
    """What ``report`` shows; the CLI's flags map one to one."""

    images: str = "digits"  # 'digits' (its held-out fifth, seed 0) or DIR/<class>/<images>
    bench: str | None = None  # a ``bench --json-out`` file of this export
    layer: str | None = None  # block name, e.g. 'L15'; None: the last non-shared block
    classes: tuple[str, ...] = ()  # for the similar-classes heat maps; () = most confused
    limit: int | None = None  # at most this many images, spread over the classes (seeded)
    top: int = 3  # classes per basis
    thumbnails: int = 3  # images per class and basis


@dataclass
class Labelled:
    """The report's images, listed; the run decodes each once, and the thumbnails on the
    page are decoded again by position, so no image is kept in memory."""

    held: HeldOut
    labels: list = field(default_factory=list)  # of the readable images, in run order
    positions: list = field(default_factory=list)  # their positions in ``held``

    @property
    def source(self) -> str:
        return self.held.source

    @property
    def images(self) -> "_Thumbnails":
        return _Thumbnails(self.held, self.positions)

    def frames(self, dep):
        """Each readable image as a frame, decoded when reached; labels recorded as it goes."""
        for example in self.held.examples():
            self.labels.append(example.label)
            self.positions.append(example.index)
            yield dep.frame(example.image)


class _Thumbnails:
    """The i-th readable image of a run, decoded when asked for (for the page's mosaics)."""

    def __init__(self, held: HeldOut, positions: list):
        self.held, self.positions = held, positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int):
        return self.held.image(self.positions[i])


@dataclass(frozen=True)
class ReportImages:
    """The images the report ran on: where from, how many were read, how many classes they
    cover, and the unreadable files (``{"count", "by_reason", "first"}``)."""

    source: str
    count: int
    classes: int
    skipped: dict

    def to_json(self) -> dict:
        return jsonable_fields(self)


@dataclass(frozen=True)
class Fidelity:
    """The manifest's stored verification (as stored, and as the page's table rows) and the
    fresh run's agreement per artifact (role -> figures)."""

    manifest: dict | None
    manifest_table: list
    fresh: dict[str, dict]

    def to_json(self) -> dict:
        return jsonable_fields(self)


@dataclass(frozen=True)
class ReportCost:
    """The cost model per stage (stage name -> cost) and for the pipeline, and the ``--bench``
    file's latencies and throughputs (None without one)."""

    stages: dict[str, StageCost]
    madds: int
    params: int
    bench: dict | None = None

    def to_json(self) -> dict:
        return jsonable_fields(self)


@dataclass(frozen=True)
class ReportFiles:
    """The files written into the report folder: the page, the JSON and the PNGs."""

    page: str
    json: str
    pictures: list[str]

    def to_json(self) -> dict:
        return jsonable_fields(self)


@dataclass(frozen=True)
class ReportResult:
    """Everything the page shows (``report.json`` is this, as JSON). ``files`` and
    ``seconds`` are None until the report is written."""

    export: str
    out: str
    images: ReportImages
    specialization: analysis.Specialization
    similar_classes: analysis.SimilarClasses
    basis_health: analysis.BasisHealth
    early_exit: analysis.EarlyExit
    fidelity: Fidelity
    cost: ReportCost
    files: ReportFiles | None = None
    generator: str = field(default_factory=lambda: f"basisnet-deploy {_version()}")
    seconds: float | None = None

    def to_json(self) -> dict:
        return jsonable_fields(self)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("basisnet-deploy")
    except PackageNotFoundError:
        return "(not installed)"


def check_out(out) -> None:
    """``--out`` must be new, or a previous report holding only what that report wrote (the
    marker file lists it), so replacing it loses nothing the tool did not write."""
    out = Path(out)
    if not out.exists():
        return
    if not (out.is_dir() and (out / MARKER).is_file()):
        raise UserError(f"--out {out}: exists and is not a previous basisnet-deploy report (no "
                        f"{MARKER} in it); choose a new folder, nothing was written")
    try:
        written = set(json.loads((out / MARKER).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"--out {out}: its {MARKER} is unreadable; remove the folder yourself "
                        "or choose another, nothing was written") from None
    extra = sorted(p.name for p in out.iterdir() if p.name not in written | {MARKER})
    if extra:
        raise UserError(f"--out {out}: holds files the report did not write ({', '.join(extra[:3])}); "
                        "move them or choose another folder, nothing was written")


def load_bench(path, export_dir) -> dict:
    """A ``bench --json-out`` file, checked to belong to this export by the manifest's sha256."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as e:
        raise UserError(f"--bench {path}: cannot read it ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"--bench {path}: not JSON; pass the file of bench --json-out") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("stages"), dict):
        raise UserError(f"--bench {path}: no 'stages'; pass the file of bench --json-out")
    want = sha256_hex(read_verified(export_dir, MANIFEST_FILE, what="manifest"))
    got = doc.get("manifest_sha256")
    if got != want:
        why = "has no manifest_sha256 (re-run bench)" if got is None else "is from another export"
        raise UserError(f"--bench {path}: {why}: its manifest sha256 is not {want[:12]}... of "
                        f"{export_dir}/{MANIFEST_FILE}; re-run bench on this export")
    return doc


def labelled_images(spec: str, labels: tuple[str, ...], limit: int | None,
                    min_side: int = 0) -> Labelled:
    """'digits' (held-out fifth, seed 0) or DIR/<class>/<images> whose classes are labels,
    listed and checked, not yet decoded; ``limit``: a seeded sample spread over the classes.
    ``min_side``: the export's ``decode_side``, so the page sees what ``predict`` sees."""
    from basisnet_deploy.data import digits
    from basisnet_deploy.data.heldout import list_held_out

    if spec == "digits":
        ds = digits()
        if tuple(ds.class_names) != tuple(labels):
            raise UserError(f"--images digits: the export's labels {list(labels)[:5]}... are "
                            "not the digits 0-9; pass --images DIR with its classes")
        _, idx = ds.split_indices(0.2, 0)
        held = HeldOut([ds.images[i] for i in idx], ds.labels[idx], "held-out digits (20%, seed 0)",
                       [], tuple(labels))
    else:
        held = list_held_out(spec, labels, min_side)
        if held.labels is None:
            raise UserError(f"--images {spec}: the report needs labelled images in class folders "
                            "DIR/<class>/<images>, named as the manifest's labels")
    return Labelled(held.sample(limit))


def fresh_run(dep, data: Labelled, progress=None) -> analysis.FreshRun:
    """The exported LM and every exported specialist form on each image, end to end, in one
    pass: each image is decoded once and runs through every form before the next."""
    from itertools import tee

    from basisnet_deploy.runtime.backends import make_factory
    from basisnet_deploy.runtime.runner import stage_outputs

    roles = [r for r in SPECIALISTS if r in dep.artifacts]
    factory = make_factory(dep.manifest.runtime, "xnnpack")

    def started(feed):
        if progress:  # the last form asks for its first frame once every form's sessions are
            progress(0, len(data.held), {})  # open: rates count from here
        yield from feed

    feeds = list(tee(data.frames(dep), len(roles)))  # consumed in lockstep: one frame buffered
    feeds[-1] = started(feeds[-1])
    streams = [stage_outputs(dep, factory, role.value.split("_")[1], feed)
               for role, feed in zip(roles, feeds)]
    logits, coeffs, spec = [], [], {role.value: [] for role in roles}
    for outs in zip(*streams):
        logits.append(outs[0].lm_logits)
        coeffs.append(outs[0].coefficients)
        for role, out in zip(roles, outs):
            spec[role.value].append(out.logits)
        if progress:
            progress(data.positions[-1] + 1, len(data.held), {})
    if progress:
        progress(len(data.held), len(data.held), {})  # unreadable files at the end are done too
    if not data.labels:
        raise UserError(f"--images {data.source}: none of its {len(data.held)} files is a readable image")
    return analysis.FreshRun(np.asarray(data.labels), np.stack(logits), np.stack(coeffs),
                             {k: np.stack(v) for k, v in spec.items()}, roles[0].value)


def _layer(options: ReportOptions, blocks: list[str]) -> int:
    if options.layer is None:
        return len(blocks) - 1
    if options.layer not in blocks:
        raise UserError(f"--layer {options.layer}: not a non-shared block; choose one of {blocks}")
    return blocks.index(options.layer)


def _check_classes(options: ReportOptions, labels, present) -> None:
    for name in options.classes:
        if name not in labels:
            raise UserError(f"--classes: {name!r} is not one of the manifest's labels")
    for name in options.classes:
        if labels.index(name) not in present:
            raise UserError(f"--classes: {name!r} has no images in --images")
    if options.classes and len(options.classes) < 2:
        raise UserError("--classes: name at least two classes to compare")


SYNTHESIS_EXTRAS = ("with_session_recreation_ms", "to_first_output_ms")


def _cost(dep, bench: dict | None) -> ReportCost:
    model = dep.cost()
    cost = ReportCost(model.stages, model.madds, model.params)
    if bench is not None:
        cost = dataclasses.replace(cost, bench={
            "file_directory": bench.get("directory"), "delegate": bench.get("delegate"),
            "runtime": bench.get("runtime"), "specialist_form": bench.get("specialist_form"),
            "fallback": bench.get("fallback"), "processors": bench.get("processors"),
            "stages": {n: s["latency_ms"] for n, s in bench["stages"].items()},
            # presynth: synthesis with the session re-creation, and to the new session's first
            # output (bench's '+ re-create' and '+ first run'): what each re-synthesis costs
            "synthesis": {k: bench["stages"]["synthesis"].get(k) for k in SYNTHESIS_EXTRAS}
            if "synthesis" in bench["stages"] else None,
            "runners": {n: {"throughput_fps": r["throughput_fps"], "latency_ms": r["latency_ms"],
                            "early_exit_rate": r["early_exit_rate"], "avg_madds": r["avg_madds"]}
                        for n, r in bench.get("runners", {}).items()}})
    return cost


def _inputs(export_dir, options: ReportOptions):
    from basisnet_deploy.runtime.deployment import Deployment

    dep = Deployment(export_dir)
    if not any(r in dep.artifacts for r in SPECIALISTS):
        raise UserError(f"{export_dir}: the export has neither a pre-synthesized nor a "
                        "coefficient-input specialist; re-export with --specialist all")
    blocks = list(dep.manifest.coefficients.get("blocks") or [])
    if not blocks:
        raise UserError(f"{export_dir}/{MANIFEST_FILE}: coefficients.blocks is missing; re-export")
    bench = load_bench(options.bench, export_dir) if options.bench else None
    return dep, blocks, bench


def build_report(export_dir, out, options: ReportOptions = ReportOptions(),
                 progress=None) -> ReportResult:
    """Run the export on the images, compute every figure and write the report to ``out``."""
    start = time.perf_counter()
    check_out(out)
    dep, blocks, bench = _inputs(export_dir, options)
    names = list(dep.labels)
    layer = _layer(options, blocks)
    data = labelled_images(options.images, tuple(names), options.limit, dep.decode_side)
    _check_classes(options, names, set(np.unique(data.held.labels).tolist()))
    run = fresh_run(dep, data, progress)
    result = ReportResult(
        export=str(export_dir), out=str(out),
        images=ReportImages(data.source, len(data.labels), len(set(data.labels)),
                            data.held.skipped.to_json()),
        specialization=analysis.specialization(run, names, blocks, layer, options.top,
                                               options.thumbnails),
        similar_classes=analysis.similar_classes(run, names, blocks, list(options.classes)),
        basis_health=analysis.basis_health(run, blocks),
        early_exit=analysis.early_exit(run, names, dep.cost(), dep.manifest.early_exit),
        fidelity=Fidelity(dep.manifest.record.verification,
                          analysis.verification_rows(dep.manifest.record.verification),
                          analysis.fresh_fidelity(run)),
        cost=_cost(dep, bench))
    return write_report(result, data, out, start)


def _pictures(result: ReportResult, data: Labelled) -> dict[str, bytes]:
    ee = result.early_exit
    at = {"threshold": ee.threshold, **ee.at_threshold}
    latency = None
    if result.cost.bench:
        latency = {n: s["p50"] for n, s in result.cost.bench["stages"].items()}
        recreate = (result.cost.bench.get("synthesis") or {}).get("with_session_recreation_ms")
        if recreate:
            latency["synthesis + re-create"] = recreate["p50"]
    return {
        "specialization.png": plots.specialization_png(result.specialization, data.images),
        "similar_classes.png": plots.similar_png(result.similar_classes),
        "basis_health.png": plots.health_png(result.basis_health),
        "early_exit.png": plots.tradeoff_png(
            ee.curve, at, f"early exit on {result.images.count} images: top-1 vs average MAdds"),
        "exit_per_class.png": plots.exit_per_class_png(ee.per_class_exit_rate, ee.threshold),
        "cost.png": plots.cost_png(result.cost.stages, latency),
    }


def write_report(result: ReportResult, data: Labelled, out, start: float) -> ReportResult:
    """PNGs, the page and the JSON into a staged folder that replaces ``out`` at the end;
    ``result`` with its ``files`` and ``seconds``."""
    pictures = _pictures(result, data)
    result = dataclasses.replace(result, files=ReportFiles(PAGE_FILE, JSON_FILE, sorted(pictures)))
    check_out(out)  # again: nothing may have appeared there while the images ran
    with staged_directory(out, "report", legacy=lambda d: (d / MARKER).is_file()) as tmp:
        for name, png in pictures.items():
            (tmp / name).write_bytes(png)
        result = dataclasses.replace(result, seconds=round(time.perf_counter() - start, 2))
        doc = jsonable(result.to_json())  # non-finite figures as null, in the JSON and the page
        (tmp / JSON_FILE).write_text(dumps(doc) + "\n")
        (tmp / PAGE_FILE).write_text(render_page(doc, pictures))
        (tmp / MARKER).write_text(json.dumps({"generator": result.generator, "export": result.export,
                                              "files": sorted(p.name for p in tmp.iterdir())}) + "\n")
    return result
