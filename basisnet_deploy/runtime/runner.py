"""The two-stage runner: lightweight model on one processor, specialist on another.

``sequential``: per frame, the LM, then (unless the frame exits early) the specialist, with
any synthesis in between, all on the caller's thread.

``pipelined``: each stage has its own worker thread, which creates its stage (and with it
its sessions: GPU delegates must be created on the thread that uses them), runs it and closes
it after its last frame; the caller never closes a stage that a worker may still be using. With the pre-synthesized form,
synthesis is a stage of its own between the LM and the specialist: it mixes the kernels for
frame t+1 and builds that frame's session while the specialist runs frame t, so the
specialist never waits for synthesis (exact per-frame BasisNet). Bounded queues between the
stages apply backpressure. Every frame, early exits included, passes through every queue (an
exit is forwarded without running the later stages), so results come back in input order.

Frame policy (``drop``): ``block`` (the default) makes the source wait when the pipeline is
full, so every frame is answered; ``keep-latest`` is what a live camera wants: only the newest
frame waits for the LM, and an older waiting one is dropped (counted in ``dropped``); at most
one frame waits between two stages, and the LM takes a frame only once the next stage has
taken the previous one. So the pipeline always starts on the newest frame and latency stays
bounded (docs/runtime.md "Measured results" has the figures).

Errors in any stage (or in the frame source) reach the caller as the original exception.
Every blocking queue operation polls a stop event, so close and shutdown never deadlock, even
mid-stream or when the caller stops reading.

Pre-synthesized specialist, re-synthesis policy (:class:`ResynthesisPolicy`): frames share
one synthesized model until a frame's coefficients differ from the ones it was built from by
more than ``tolerance`` (max abs), or ``every`` frames have used it. The default tolerance 0
re-synthesizes for every distinct coefficient set, which is exact.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from basisnet_deploy.artifacts.manifest import Role
from basisnet_deploy.common.errors import UserError
from basisnet_deploy.runtime.synthesizer import BASES_KINDS, SynthesizedModel, Synthesizer

MODES = ("sequential", "pipelined")
FORMS = ("coefficient", "presynth")
DROP_POLICIES = ("block", "keep-latest")
_DONE = object()


@dataclass
class Result:
    index: int
    label: int
    name: str
    confidence: float
    stage: str  # "lightweight" (early exit) or "specialist"
    times_ms: dict = field(default_factory=dict)
    latency_ms: float = 0.0  # from submission to result, queueing included
    lightweight_label: int = -1  # the LM's own answer, whichever stage answered
    lightweight_confidence: float = 0.0


@dataclass
class ResynthesisPolicy:
    tolerance: float = 0.0
    every: int = 0  # 0: no frame limit

    def needed(self, current, coefficients, uses: int) -> bool:
        if current is None:
            return True
        if self.every and uses >= self.every:
            return True
        return float(np.max(np.abs(coefficients - current))) > self.tolerance


# A --threshold no confidence reaches: the specialist answers every frame ("--threshold none").
NEVER_EXIT = math.inf


def exit_threshold(given: float | None, recorded: float | None) -> float | None:
    """The early-exit threshold a run uses, as RunnerOptions takes it (None: never exit):
    ``given`` (NEVER_EXIT: never exit), else the manifest's ``recorded``."""
    if given is None:
        return recorded
    return None if given == NEVER_EXIT else given


@dataclass(frozen=True)
class RunnerOptions:
    threshold: float | None = None  # early-exit confidence; None: never exit
    form: str = "presynth"  # specialist form: presynth or coefficient
    mode: str = "pipelined"  # sequential or pipelined
    queue_size: int = 4  # frames waiting between two stages
    policy: ResynthesisPolicy = field(default_factory=ResynthesisPolicy)
    drop: str = "block"  # block or keep-latest (see the module docstring)
    bases: str = "float32"  # presynth: float32 bases (exact bytes) or int8 (compact, smaller)

    def validated(self) -> "RunnerOptions":
        for value, allowed, name in ((self.mode, MODES, "mode"), (self.form, FORMS, "form"),
                                     (self.drop, DROP_POLICIES, "drop"), (self.bases, BASES_KINDS, "bases")):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {self.queue_size}")
        return self


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
    return z / np.sum(z, axis=-1, keepdims=True)


@dataclass
class _Item:
    """One frame on its way through the stages."""

    index: int
    frame: tuple  # (LM input, specialist input)
    submitted: float
    times: dict = field(default_factory=dict)
    coefficients: np.ndarray | None = None
    label: int = -1
    confidence: float = 0.0
    lm_label: int = -1
    lm_confidence: float = 0.0
    lm_logits: np.ndarray | None = None
    logits: np.ndarray | None = None  # the specialist's
    exits: bool = False
    model: SynthesizedModel | None = None  # presynth: the session this frame runs on


def _finite(values: np.ndarray, artifact, index: int) -> np.ndarray:
    """``values``, refused where an artifact output NaN or infinity: argmax would read that as
    class 0 and print it as an answer."""
    if not np.isfinite(values).all():
        raise UserError(f"{artifact}: NaN or infinite outputs on frame {index}; the artifact is "
                        "broken: `basisnet-deploy verify` on this export measures it, then re-export")
    return values


def _class_logits(values: np.ndarray, artifact, index: int, labels: list[str]) -> np.ndarray:
    """:func:`_finite` logits, refused unless there is one per label: a manifest whose labels
    and class count were edited together would print another class's name, or none."""
    if values.shape != (len(labels),):
        raise UserError(f"{artifact}: answers logits of shape {list(values.shape)} but the "
                        f"manifest names {len(labels)} labels; the manifest does not belong to "
                        "this artifact: re-run basisnet-deploy export")
    return _finite(values, artifact, index)


class _LightStage:
    """A stage: called once per frame, closed once by the thread that made it."""

    def __init__(self, deployment, factory, threshold):
        self.session = deployment.session(factory, Role.LIGHTWEIGHT)
        self.path = deployment.path(Role.LIGHTWEIGHT)
        self.labels = deployment.labels
        self.threshold = threshold

    def __call__(self, item: _Item) -> _Item:
        t = time.perf_counter()
        out = self.session.run({"image": item.frame[0]})
        item.times["lightweight"] = (time.perf_counter() - t) * 1e3
        item.lm_logits = _class_logits(np.asarray(out["logits"], np.float32)[0], self.path, item.index,
                                       self.labels)
        probs = softmax(item.lm_logits)
        item.coefficients = _finite(np.asarray(out["coefficients"], np.float32)[0], self.path, item.index)
        item.label = item.lm_label = int(np.argmax(probs))
        item.confidence = item.lm_confidence = float(probs[item.label])
        item.exits = self.threshold is not None and item.confidence >= self.threshold
        return item

    def close(self) -> None:
        self.session = None  # the factory owns the session; this stage only lets go of it


class _SynthesisStage:
    """Presynth: the session each frame runs on, re-synthesized as the policy asks."""

    def __init__(self, deployment, factory, options: "RunnerOptions", buffers: int,
                 stop: threading.Event | None = None, counted: Callable[[], None] = lambda: None):
        compact = deployment.compact_bases() if options.bases == "int8" else None
        self.synthesizer = Synthesizer(deployment.presynth(), factory, buffers, stop, compact)
        self.policy = options.policy
        self.current: SynthesizedModel | None = None
        self.uses = 0
        self.counted = counted  # called once per synthesized model

    def __call__(self, item: _Item) -> _Item:
        if item.exits:
            return item
        if self.current is None or self.policy.needed(self.current.coefficients,
                                                      item.coefficients, self.uses):
            t = time.perf_counter()
            fresh = self.synthesizer.build(item.coefficients)
            item.times["synthesis"] = (time.perf_counter() - t) * 1e3
            if self.current is not None:
                self.current.release()  # this stage's own hold; frames in flight keep theirs
            self.current, self.uses = fresh, 0
            self.counted()
        self.uses += 1
        item.model = self.current.hold()
        return item

    def close(self) -> None:
        if self.current is not None:
            self.current.release()
            self.current = None


class _SpecialistStage:
    def __init__(self, deployment, factory, form: str):
        self.form = form
        role = Role.SPECIALIST_COEFFICIENT if form == "coefficient" else Role.SPECIALIST_PRESYNTH
        self.session = deployment.session(factory, role) if form == "coefficient" else None
        self.path = deployment.path(role)
        self.labels = deployment.labels

    def __call__(self, item: _Item) -> _Item:
        if item.exits:
            return item
        if self.form == "presynth":
            session, feeds = item.model.session, {"image": item.frame[1]}
        else:
            session, feeds = self.session, {"image": item.frame[1], "coefficients": item.coefficients[None]}
        t = time.perf_counter()
        logits = item.logits = _class_logits(np.asarray(session.run(feeds)["logits"], np.float32)[0],
                                             self.path, item.index, self.labels)
        item.times["specialist"] = (time.perf_counter() - t) * 1e3
        if item.model is not None:
            item.model.release()
            item.model = None
        probs = softmax(logits)
        item.label, item.confidence = int(np.argmax(probs)), float(np.max(probs))
        return item

    def close(self) -> None:
        self.session = None


@dataclass
class StageOutputs:
    """Both stages' raw outputs for one frame (no early exit)."""

    lm_logits: np.ndarray
    coefficients: np.ndarray  # [L, K]
    logits: np.ndarray  # the specialist's


def stage_outputs(deployment, factory, form: str, frames) -> Iterator[StageOutputs]:
    """LM and specialist outputs per frame, sequentially on this thread, every frame through
    both stages (for analysis: threshold sweeps, reports)."""
    options = RunnerOptions(threshold=None, form=form, mode="sequential")
    return TwoStageRunner(deployment, factory, factory, options).outputs(frames)


def _close(stage) -> None:
    close = getattr(stage, "close", None)
    if close is not None:
        close()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


class TwoStageRunner:
    """Run frames through both stages; see the module docstring.

    ``light`` and ``specialist`` are backend factories (``factory(path, model_bytes=None)``
    -> session). After a run, ``resyntheses`` counts the models synthesized and ``dropped``
    the frames a keep-latest run left out.
    """

    SYNTH_QUEUE = 1  # frames between synthesis and the specialist: keeps the latency short

    def __init__(self, deployment, light: Callable, specialist: Callable,
                 options: RunnerOptions = RunnerOptions()):
        self.deployment, self.light, self.specialist = deployment, light, specialist
        self.options = options.validated()
        self.resyntheses = 0
        self.dropped = 0

    def run(self, frames: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[Result]:
        """Results in input order for frames of (lightweight input, specialist input)."""
        self.resyntheses = 0
        if self.options.mode == "sequential":
            return self._each(self._sequential(frames), self._result)
        return self._run_pipelined(frames)

    def outputs(self, frames: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[StageOutputs]:
        """Both stages' raw outputs per frame, sequentially on the caller's thread (with no
        threshold, every frame runs the specialist too)."""
        self.resyntheses = 0
        return self._each(self._sequential(frames), lambda item: StageOutputs(
            item.lm_logits, item.coefficients, item.logits))

    @staticmethod
    def _each(items, view):
        try:
            for item in items:
                yield view(item)
        finally:
            items.close()  # the stages close now, on this thread, not when collected

    def _result(self, item: _Item) -> Result:
        return Result(item.index, item.label, self.deployment.labels[item.label], item.confidence,
                      "lightweight" if item.exits else "specialist", item.times,
                      (time.perf_counter() - item.submitted) * 1e3, item.lm_label, item.lm_confidence)

    def _stage_factories(self, buffers: int, stop=None) -> list[Callable[[], Callable]]:
        """Each stage as a factory, called on the thread that will run and close it."""
        o, dep = self.options, self.deployment
        factories = [lambda: _LightStage(dep, self.light, o.threshold)]
        if o.form == "presynth":
            factories.append(lambda: _SynthesisStage(dep, self.specialist, o, buffers, stop,
                                                     self._count_resynthesis))
        factories.append(lambda: _SpecialistStage(dep, self.specialist, o.form))
        return factories

    def _count_resynthesis(self) -> None:  # only the one synthesis stage calls it
        self.resyntheses += 1

    def _sequential(self, frames) -> Iterator[_Item]:
        """Every stage made, run and closed on the thread that drives this generator."""
        stages = []
        try:
            for make in self._stage_factories(buffers=2):
                stages.append(make())
            for index, frame in enumerate(frames):
                item = _Item(index, frame, time.perf_counter())
                for stage in stages:
                    item = stage(item)
                yield item
        finally:
            for stage in stages:
                _close(stage)

    def _run_pipelined(self, frames):
        # Buffers: one being built, the synthesis stage's current, the queued frames', the
        # specialist's: SYNTH_QUEUE + 3 can never all be held, so building never deadlocks.
        stop = threading.Event()
        pipeline = _Pipeline(self._stage_factories(self.SYNTH_QUEUE + 3, stop),
                             self.options.queue_size, self.SYNTH_QUEUE, self.options.drop, stop)
        try:
            for item in pipeline.run(frames):
                yield self._result(item)
        finally:
            self.dropped = pipeline.dropped


class _Pipeline:
    """Worker threads joined by bounded queues: feeder -> stage 1 -> ... -> caller."""

    def __init__(self, stages: list[Callable[[], Callable]], queue_size: int, last_queue: int,
                 drop: str, stop: threading.Event):
        self.stages, self.drop, self.stop = stages, drop, stop
        sizes = [queue_size] * len(stages) + [queue_size]
        if len(stages) > 2:
            sizes[-2] = last_queue  # between synthesis and the specialist
        if drop == "keep-latest":
            # One frame at most waits before each stage: a deeper queue only ages frames.
            sizes[:-1] = [1] * (len(sizes) - 1)
        self.queues = [queue.Queue(n) for n in sizes]
        self.dropped = 0

    def put(self, q, item) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def get(self, q):
        while not self.stop.is_set():
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                continue
        return _DONE

    def fail(self, exc: BaseException) -> None:
        """Hand the error to the caller even if the output queue is full, then stop everyone."""
        out = self.queues[-1]
        try:
            out.put_nowait(_Failure(exc))
        except queue.Full:
            try:
                out.get_nowait()
            except queue.Empty:
                pass
            out.put_nowait(_Failure(exc))
        self.stop.set()

    def offer_latest(self, item) -> None:
        """keep-latest: never wait; when the first queue is full, drop its oldest frame."""
        q = self.queues[0]
        while not self.stop.is_set():
            try:
                q.put_nowait(item)
                return
            except queue.Full:
                try:
                    q.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def wait_until_taken(self, q) -> None:
        """keep-latest, before the LM takes a frame: wait until the next stage has taken the
        previous one. The LM then starts on the newest frame when the pipeline can move it
        on at once, instead of holding an older one that ages while the next stage is busy."""
        with q.not_full:  # notified on every get
            while len(q.queue) and not self.stop.is_set():
                q.not_full.wait(0.05)

    def feeder(self, frames) -> None:
        try:
            for index, frame in enumerate(frames):
                item = _Item(index, frame, time.perf_counter())
                if self.drop == "keep-latest":
                    self.offer_latest(item)
                elif not self.put(self.queues[0], item):
                    return
            self.put(self.queues[0], _DONE)
        except BaseException as e:  # the frame source failed
            self.fail(e)

    def worker(self, position: int) -> None:
        """Make the stage, run it on every frame, close it: all on this thread, so the stage
        is closed only after its last use, even when the caller stopped waiting for it."""
        stage = None
        try:
            stage = self.stages[position]()
            source, sink = self.queues[position], self.queues[position + 1]
            pull = position == 0 and self.drop == "keep-latest"
            while True:
                if pull:
                    self.wait_until_taken(sink)
                item = self.get(source)
                if item is _DONE:
                    self.put(sink, _DONE)
                    return
                if not self.put(sink, stage(item)):
                    return
        except BaseException as e:
            self.fail(e)
        finally:
            if stage is not None:
                try:
                    _close(stage)
                except BaseException as e:
                    self.fail(e)

    def run(self, frames) -> Iterator[_Item]:
        threads = [threading.Thread(target=self.feeder, args=(frames,), name="basisnet-feeder", daemon=True)]
        threads += [threading.Thread(target=self.worker, args=(i,), name=f"basisnet-stage{i}", daemon=True)
                    for i in range(len(self.stages))]
        for t in threads:
            t.start()
        try:
            yield from self._results()
        finally:
            self.stop.set()
            for t in threads:
                t.join(timeout=1.0)

    def _results(self) -> Iterator[_Item]:
        out = self.queues[-1]
        while True:
            item = self.get(out)
            if item is _DONE and self.stop.is_set():
                # Stopped by a failure: drain what is queued; the failure comes last.
                try:
                    item = out.get_nowait()
                except queue.Empty:
                    return
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
