"""Check every exported artifact against the float TF model from the checkpoint.

For each artifact, on held-out images, one frame at a time as on a device:
- ``top1_agreement`` with the float model, and ``accuracy`` where labels are known;
- logit error: max and mean absolute, and max relative to the largest float logit;
- for the lightweight model, the coefficient error;
- ``ties``: how close to a tie the float answers were where the artifact answers differently.

Specialists are checked twice: ``isolated`` (fed the float LM's coefficients, so only the
specialist's own error shows) and ``end_to_end`` (fed the exported LM's coefficients, against
the float pipeline), which is what a device computes.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from basisnet_deploy.artifacts.manifest import MANIFEST_FILE, Manifest, Role
from basisnet_deploy.common.answers import NO_ANSWER, answers, same_answers
from basisnet_deploy.common.errors import UserError
from basisnet_deploy.common.files import sha256_hex
from basisnet_deploy.data.heldout import UNLABELLED, HeldOut, batch_size_for, class_counts

# Images per call of the float TF model (artifacts run one frame at a time): at most 32, and
# at most BATCH_PIXELS specialist input pixels (data/heldout.py says why).
FLOAT_BATCH = 32


@dataclass(frozen=True)
class ErrorSummary:
    """Absolute error over every element compared (max and mean), and the max relative to the
    largest reference magnitude. ``non_finite``: elements where either side was NaN or
    infinite; where there are any, the three errors are None (no number describes them)."""

    max_abs: float | None
    mean_abs: float | None
    max_rel: float | None
    non_finite: int = 0

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TieSummary:
    """How close to a tie the float model's answers were. ``median_gap``: its top logit minus
    its second, median over every image. ``disagreeing_max_gap``: over the images the artifact
    answers differently, the largest float logit of the float answer minus the float logit of
    the artifact's answer (None where it agrees on all). Disagreements whose gaps are all far
    below the median sit on near ties, which any small error moves; a gap near the median is
    an error that changes a clear answer. Non-finite logits are left out (None if all are)."""

    median_gap: float | None
    disagreeing: int
    disagreeing_max_gap: float | None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ArtifactScore:
    """One artifact against the float model: top-1 agreement and logit error; ``accuracy``
    and ``float_accuracy`` (the float model's) where labels are known; ``coefficients``: the
    lightweight model's coefficient error (None for a specialist); ``ties``: how close to a
    tie the float answers were (:class:`TieSummary`)."""

    top1_agreement: float
    logits: ErrorSummary
    accuracy: float | None = None
    float_accuracy: float | None = None
    coefficients: ErrorSummary | None = None
    ties: TieSummary | None = None

    def to_json(self) -> dict:
        """top1_agreement, logits, then accuracy, float_accuracy, coefficients and ties where
        known."""
        out = {"top1_agreement": self.top1_agreement, "logits": self.logits.to_json()}
        if self.accuracy is not None:
            out["accuracy"] = self.accuracy
            out["float_accuracy"] = self.float_accuracy
        if self.coefficients is not None:
            out["coefficients"] = self.coefficients.to_json()
        if self.ties is not None:
            out["ties"] = self.ties.to_json()
        return out


@dataclass(frozen=True)
class SpecialistScores:
    """A specialist fed the float LM's coefficients (``isolated``) and the exported LM's
    (``end_to_end``, what a device computes)."""

    isolated: ArtifactScore
    end_to_end: ArtifactScore

    def to_json(self) -> dict:
        return {"isolated": self.isolated.to_json(), "end_to_end": self.end_to_end.to_json()}


@dataclass(frozen=True)
class VerificationResult:
    """Every artifact of an export against the float model on held-out images.

    The specialists and ``presynth_vs_coefficient`` (the two specialist forms' logits, fed the
    same coefficients) are None where the export lacks them; ``classes`` (images per class)
    is None for unlabelled images; ``specialist_processor`` and ``fallback`` are set by
    :func:`verify_export` (where the specialists ran; why they ran on the CPU). ``to_json()``
    leaves out what is None; it is the manifest's ``verification`` record.
    """

    images: int
    source: str
    lightweight: ArtifactScore
    skipped: dict  # {"count", "by_reason", "first"}: the unreadable files
    seconds: float
    images_per_s: float
    specialist_coefficient: SpecialistScores | None = None
    specialist_presynth: SpecialistScores | None = None
    presynth_vs_coefficient: ErrorSummary | None = None
    classes: dict[str, int] | None = None
    specialist_processor: str | None = None
    fallback: str | None = None

    def specialists(self) -> dict[str, SpecialistScores]:
        """Role name -> scores, for the specialist forms the export has."""
        return {role: s for role in ("specialist_coefficient", "specialist_presynth")
                if (s := getattr(self, role)) is not None}

    def to_json(self) -> dict:
        out = {"images": self.images, "source": self.source,
               "lightweight": self.lightweight.to_json(),
               **{role: s.to_json() for role, s in self.specialists().items()}}
        if self.presynth_vs_coefficient is not None:
            out["presynth_vs_coefficient"] = self.presynth_vs_coefficient.to_json()
        out.update(skipped=self.skipped, seconds=self.seconds, images_per_s=self.images_per_s)
        if self.classes is not None:
            out["classes"] = self.classes
        if self.specialist_processor is not None:
            out["specialist_processor"] = self.specialist_processor
        if self.fallback is not None:
            out["fallback"] = self.fallback
        return out


def float_batch_size(resolution: int) -> int:
    """Images per float-model batch for a specialist of this input size (1 to FLOAT_BATCH)."""
    return batch_size_for(resolution, FLOAT_BATCH)


@dataclass
class ErrorStats:
    """Running max and mean absolute error, and the largest reference magnitude (for the
    relative error), over every element seen."""

    max_abs: float = 0.0
    sum_abs: float = 0.0
    count: int = 0
    max_ref: float = 0.0
    non_finite: int = 0

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        diff = np.abs(got - ref)
        # Counted apart: max() with a NaN keeps whichever came first, so a NaN artifact would
        # otherwise report a max error of 0.
        bad = diff.size - int(np.count_nonzero(np.isfinite(diff)))
        self.non_finite += bad
        if bad:
            return
        self.max_abs = max(self.max_abs, float(diff.max()))
        self.sum_abs += float(diff.sum(dtype=np.float64))
        self.count += diff.size
        self.max_ref = max(self.max_ref, float(np.abs(ref).max()))

    def result(self) -> ErrorSummary:
        if self.non_finite:
            return ErrorSummary(None, None, None, self.non_finite)
        return ErrorSummary(self.max_abs, self.sum_abs / max(self.count, 1),
                            self.max_abs / max(self.max_ref, 1e-12))


def top2_gaps(logits: np.ndarray) -> np.ndarray:
    """Each row's largest logit minus its second largest (0 for a single class)."""
    if logits.shape[-1] < 2:
        return np.zeros(logits.shape[:-1], np.float32)
    two = np.partition(logits, -2, axis=-1)[..., -2:]
    return (two[..., 1] - two[..., 0]).astype(np.float32)


@dataclass
class ScoreStats:
    """Running top-1 agreement with the float model, accuracy (labelled images) and logit
    error; running sums, but for the float top-two gaps (4 bytes an image) whose median
    :class:`TieSummary` reports."""

    images: int = 0
    agree: int = 0
    labelled: int = 0
    hits: int = 0
    float_hits: int = 0
    logits: ErrorStats = field(default_factory=ErrorStats)
    gaps: list = field(default_factory=list)
    disagreeing_max_gap: float | None = None

    def add(self, ref: np.ndarray, got: np.ndarray, labels: np.ndarray) -> None:
        ref_top, got_top = answers(ref), answers(got)
        known = labels != UNLABELLED
        self.images += len(labels)
        agree = same_answers(ref_top, got_top)
        self.agree += int(np.sum(agree))
        self.labelled += int(known.sum())
        self.hits += int(np.sum((got_top == labels) & known))
        self.float_hits += int(np.sum((ref_top == labels) & known))
        self.logits.add(ref, got)
        self.gaps.append(top2_gaps(ref))
        rows = np.flatnonzero(~agree & (ref_top != NO_ANSWER) & (got_top != NO_ANSWER))
        # What the float model gave up: its answer's logit minus the logit of the artifact's
        # answer (the top-two gap when the artifact took the runner-up; more otherwise).
        given_up = ref[rows, ref_top[rows]] - ref[rows, got_top[rows]]
        if given_up.size:
            self.disagreeing_max_gap = max(self.disagreeing_max_gap or 0.0, float(given_up.max()))

    def ties(self) -> TieSummary | None:
        if not self.gaps:
            return None
        gaps = np.concatenate(self.gaps)
        gaps = gaps[np.isfinite(gaps)]
        return TieSummary(float(np.median(gaps)) if gaps.size else None, self.images - self.agree,
                          self.disagreeing_max_gap)

    def result(self, coefficients: ErrorSummary | None = None) -> ArtifactScore:
        known = bool(self.labelled)
        return ArtifactScore(self.agree / max(self.images, 1), self.logits.result(),
                             self.hits / self.labelled if known else None,
                             self.float_hits / self.labelled if known else None, coefficients,
                             self.ties())


@dataclass
class FloatBatch:
    """A batch of decoded images through the float TF model: inputs and reference outputs."""

    light: np.ndarray  # [B, r, r, 3] LM inputs
    image: np.ndarray  # [B, R, R, 3] specialist inputs
    labels: np.ndarray  # [B], UNLABELLED where unknown
    lm_logits: np.ndarray
    coefficients: np.ndarray
    logits: np.ndarray  # the float specialist's, fed the float LM's coefficients


def float_batch(net, manifest: Manifest, examples: list) -> FloatBatch:
    """Preprocess ``examples`` at both resolutions and run the float model on them at once."""
    import tensorflow as tf

    from basisnet_deploy.data import preprocess

    pre = manifest.preprocessing
    light = np.stack([preprocess(e.image, manifest.light_resolution, pre) for e in examples])
    image = np.stack([preprocess(e.image, manifest.resolution, pre) for e in examples])
    ref = net.lightweight(tf.constant(light), training=False)
    logits = net.specialist([tf.constant(image), ref["coefficients"]], training=False).numpy()
    return FloatBatch(light, image, np.asarray([e.label for e in examples], np.int64),
                      ref["logits"].numpy(), ref["coefficients"].numpy(), logits)


class Artifacts:
    """The export's artifacts opened once, each run one frame at a time as on a device.

    Each artifact is read once and checked against the manifest; its session loads those
    bytes. ``specialists``: a backend factory (runtime/backends.py) for the specialists, e.g.
    the GPU's; None: the CPU. The lightweight model always runs on the CPU, as on a device."""

    def __init__(self, directory: Path, manifest: Manifest, specialists=None):
        from basisnet_deploy.artifacts.manifest import model_bytes
        from basisnet_deploy.artifacts.synthesis import load_presynth
        from basisnet_deploy.runtime.sessions import open_session

        arts = manifest.artifacts
        self.factory = specialists or (lambda path, model=None: open_session(path, model=model))

        def opened(factory, role):
            return factory(directory / arts[role].file, model_bytes(directory, arts[role]))
        self.lm = opened(open_session, Role.LIGHTWEIGHT)
        self.coefficient = (opened(self.factory, Role.SPECIALIST_COEFFICIENT)
                            if Role.SPECIALIST_COEFFICIENT in arts else None)
        self.presynth = (load_presynth(directory, arts[Role.SPECIALIST_PRESYNTH])
                         if Role.SPECIALIST_PRESYNTH in arts else None)

    def lightweight(self, light: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outs = [self.lm.run({"image": x[None]}) for x in light]
        return (np.concatenate([o["logits"] for o in outs]).astype(np.float32),
                np.concatenate([o["coefficients"] for o in outs]).astype(np.float32))

    def specialist_coefficient(self, image: np.ndarray, coeff: np.ndarray) -> np.ndarray:
        return np.concatenate([self.coefficient.run({"image": x[None], "coefficients": c[None]})["logits"]
                               for x, c in zip(image, coeff)]).astype(np.float32)

    def specialist_presynth(self, image: np.ndarray, coeff: np.ndarray) -> np.ndarray:
        from basisnet_deploy.artifacts.synthesis import synthesize

        ps, outs = self.presynth, []
        release = getattr(self.factory, "release", lambda session: None)
        for x, c in zip(image, coeff):
            session = self.factory(ps.path, synthesize(ps.template, ps.table, ps.bases, c))
            outs.append(session.run({"image": x[None]})["logits"])
            release(session)  # a GPU session holds device memory
        return np.concatenate(outs).astype(np.float32)


class Verification:
    """Running statistics of every check, fed one float batch at a time."""

    def __init__(self, artifacts: Artifacts):
        self.artifacts = artifacts
        self.lightweight, self.coefficients = ScoreStats(), ErrorStats()
        self.forms = {role: {"isolated": ScoreStats(), "end_to_end": ScoreStats()}
                      for role, present in (("specialist_coefficient", artifacts.coefficient),
                                            ("specialist_presynth", artifacts.presynth))
                      if present is not None}
        self.presynth_vs_coefficient = ErrorStats()
        self.labels: list[int] = []

    def add(self, ref: FloatBatch) -> None:
        got_logits, got_coeff = self.artifacts.lightweight(ref.light)
        self.lightweight.add(ref.lm_logits, got_logits, ref.labels)
        self.coefficients.add(ref.coefficients, got_coeff)
        isolated = {}
        for role, checks in self.forms.items():
            run = getattr(self.artifacts, role)
            # The exported LM's coefficients (got_coeff) drive end to end, as on a device.
            isolated[role] = run(ref.image, ref.coefficients)
            checks["isolated"].add(ref.logits, isolated[role], ref.labels)
            checks["end_to_end"].add(ref.logits, run(ref.image, got_coeff), ref.labels)
        if len(isolated) == 2:
            self.presynth_vs_coefficient.add(isolated["specialist_coefficient"],
                                             isolated["specialist_presynth"])
        self.labels.extend(int(y) for y in ref.labels)

    def scores(self) -> dict:
        """The :class:`VerificationResult` fields of the artifacts' scores."""
        out = {"lightweight": self.lightweight.result(self.coefficients.result())}
        for role, checks in self.forms.items():
            out[role] = SpecialistScores(checks["isolated"].result(), checks["end_to_end"].result())
        if len(self.forms) == 2:
            out["presynth_vs_coefficient"] = self.presynth_vs_coefficient.result()
        return out


def rate_lines(say, every_s: float = 30.0):
    """A ``progress(done, total, logs)`` for :func:`verify_directory` that passes ``say`` one
    line with images/s and the time left, at most every ``every_s`` seconds (none for a
    short run)."""
    started = [time.perf_counter()]
    last = [started[0]]

    def progress(done, total, logs):
        now = time.perf_counter()
        if done == 0:  # the work starts: the setup before it is not part of the rate
            started[0] = last[0] = now
            return
        if now - last[0] < every_s or done >= total:
            return
        last[0] = now
        rate = done / max(now - started[0], 1e-9)
        say(f"verified {done}/{total} images, {rate:.1f} images/s, "
            f"about {(total - done) / max(rate, 1e-9):.0f} s left")
    return progress


def verify_directory(directory, manifest: Manifest, net, held: HeldOut, progress=None,
                     batch_size: int | None = None, specialists=None) -> VerificationResult:
    """Verification results for every artifact in ``directory`` (see module docstring) on
    ``held``, streamed: images are decoded ``batch_size`` at a time (default
    :func:`float_batch_size`) and every figure is a running sum (the float top-two gaps
    aside: 4 bytes an image), so memory grows with the number of images by those gaps only.

    ``progress(done, total, logs)`` is called after each batch; unreadable files are
    counted in ``skipped``, and an error only when none is readable. ``specialists``: the
    backend factory the specialists run on (:class:`Artifacts`); None: the CPU.
    """
    from basisnet_deploy.data import DataError
    from basisnet_deploy.data.datasets import describe_skipped

    started, total = time.perf_counter(), len(held)
    check = Verification(Artifacts(Path(directory), manifest, specialists))
    if progress:
        progress(0, total, {})  # the work starts: rates count from here
    for examples in held.batches(batch_size or float_batch_size(manifest.resolution)):
        check.add(float_batch(net, manifest, examples))
        if progress:
            progress(examples[-1].index + 1, total, {})
    if progress:
        progress(total, total, {})  # unreadable files at the end are done too
    if not check.labels:
        raise DataError(f"{held.source}: none of its {total} files is a readable image "
                        f"({describe_skipped(held.skipped.counts, held.skipped.files)})")
    seconds = time.perf_counter() - started
    return VerificationResult(
        images=len(check.labels), source=held.source, **check.scores(),
        skipped=held.skipped.to_json(), seconds=round(seconds, 2),
        images_per_s=round(len(check.labels) / max(seconds, 1e-9), 2),
        classes=None if held.labels is None else class_counts(check.labels, held.class_names))


def export_checkpoint(directory, manifest: Manifest, given=None) -> Path:
    """The checkpoint an export was made from: ``given`` (``--checkpoint``), else the path its
    manifest records; a relative path (as older exports record it, from the folder export ran
    in) is also looked for under each folder above the export. Refused when it is not there,
    or when its config.json is not the one the export recorded (sha256)."""
    from basisnet_deploy.model.checkpoint import CONFIG_FILE

    where = Path(directory) / MANIFEST_FILE
    want = manifest.checkpoint.get("config_sha256")
    if given:
        path = Path(given)
    else:
        recorded = manifest.checkpoint.get("path")
        if not recorded:
            raise UserError(f"{where} records no checkpoint; pass the one the export was made "
                            "from with --checkpoint CKPT")
        path = _recorded_checkpoint(Path(recorded), where, want)
    config = path / CONFIG_FILE
    if want and config.is_file() and sha256_hex(config.read_bytes()) != want:
        raise UserError(f"{config}: not the checkpoint this export was made from (its sha256 "
                        f"differs from the one {where} records: another model or training run); "
                        "pass that checkpoint with --checkpoint CKPT, or re-export")
    return path


def _recorded_checkpoint(recorded: Path, where: Path, want: str | None) -> Path:
    """The path the manifest ``where`` records, or (relative) the first folder above the
    export under which it holds a config.json of the recorded sha256."""
    from basisnet_deploy.model.checkpoint import CONFIG_FILE

    if recorded.is_absolute():
        if (recorded / CONFIG_FILE).is_file():
            return recorded
    else:  # from the folder the export ran in: here, or one above the export
        for candidate in [recorded, *(base / recorded for base in where.parent.resolve().parents)]:
            config = candidate / CONFIG_FILE
            if config.is_file() and (want is None or sha256_hex(config.read_bytes()) == want):
                return candidate
    raise UserError(f"{recorded}: the checkpoint {where} records is not "
                    "there (moved, or a relative path from another folder); pass it with "
                    "--checkpoint CKPT")


def verify_export(directory, images: str | None = None, limit: int | None = None,
                  progress=None, delegate: str = "xnnpack",
                  allow_fallback: bool = False, checkpoint_dir=None) -> VerificationResult:
    """Verify an export directory against its checkpoint on held-out images.

    ``checkpoint_dir``: the export's checkpoint (default: the path its manifest records;
    :func:`export_checkpoint` checks it). ``images``: 'digits' or a folder; default the
    checkpoint's own held-out split.
    ``limit``: at most this many, a seeded sample spread over the classes (the same images
    export's own verification of that many uses). ``delegate``: where the specialists run
    (``gpu``: on the GPU, checked up front as bench does; the result says which processor).
    """
    from basisnet_deploy.artifacts.manifest import check_files, load_manifest
    from basisnet_deploy.data.datasets import evaluation_set
    from basisnet_deploy.model import checkpoint

    manifest = load_manifest(directory)
    check_files(directory, manifest)
    path = export_checkpoint(directory, manifest, checkpoint_dir)
    held = evaluation_set(checkpoint.load_config(path), images).sample(limit)  # before any work
    factory = _specialist_factory(directory, manifest, delegate, allow_fallback)
    net, _ = checkpoint.load(path)
    try:
        result = verify_directory(directory, manifest, net, held, progress, specialists=factory)
    finally:
        factory.close()
    return dataclasses.replace(result, specialist_processor=factory.processor,
                               fallback=factory.fallback_note or None)


def _specialist_factory(directory, manifest: Manifest, delegate: str, allow_fallback: bool):
    """The specialists' backend, checked up front on every specialist the export has (the
    first that the delegate cannot run decides, with --allow-fallback, the CPU for all)."""
    from basisnet_deploy.artifacts.manifest import model_bytes
    from basisnet_deploy.runtime.backends import make_factory

    runtime = manifest.runtime
    factory = None
    for role in (Role.SPECIALIST_COEFFICIENT, Role.SPECIALIST_PRESYNTH):
        if role in manifest.artifacts:
            entry = manifest.artifacts[role]
            probe = Path(directory) / entry.file
            factory = make_factory(runtime, delegate, 1, allow_fallback=allow_fallback, probe=str(probe),
                                   probe_model=model_bytes(directory, entry))
            if factory.fallback_note:
                break
    return factory
