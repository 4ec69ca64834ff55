"""The two-stage runner: lightweight model on one processor, specialist on another.

``sequential``: per frame, the LM, then (unless the frame exits early) the specialist.
``pipelined``: each stage has its own worker thread, which creates and owns its session (GPU
delegates must be created on the thread that uses them). Bounded queues between feeder, LM
and specialist apply backpressure, so while the specialist handles frame t the LM previews
frame t+1. Every frame, early exits included, passes through the specialist worker's queue
(an exit is forwarded without running the specialist), so results come back in input order.

Errors in either stage (or in the frame source) reach the caller as the original exception.
Every blocking queue operation polls a stop event, so close and shutdown never deadlock, even
mid-stream or when the caller stops reading.

Pre-synthesized specialist, re-synthesis policy (:class:`ResynthesisPolicy`): frames share
one synthesized model until a frame's coefficients differ from the ones it was built from by
more than ``tolerance`` (max abs), or ``every`` frames have used it. The default tolerance 0
re-synthesizes for every distinct coefficient set, which is exact.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from basisnet_deploy.artifacts.synthesis import synthesize

MODES = ("sequential", "pipelined")
FORMS = ("coefficient", "presynth")
_DONE = object()


@dataclass
class Result:
    index: int
    label: int
    name: str
    confidence: float
    stage: str  # "lightweight" (early exit) or "specialist"
    times_ms: dict = field(default_factory=dict)
    resynthesized: bool = False  # presynth: this frame's coefficients were synthesized anew
    latency_ms: float = 0.0  # from submission to result, queueing included


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


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
    return z / np.sum(z, axis=-1, keepdims=True)


class _LightStage:
    def __init__(self, deployment, factory):
        self.session = factory(deployment.path("lightweight"))

    def __call__(self, x):
        t = time.perf_counter()
        out = self.session.run({"image": x})
        ms = (time.perf_counter() - t) * 1e3
        return np.asarray(out["logits"], np.float32)[0], np.asarray(out["coefficients"], np.float32)[0], ms


class _SpecialistStage:
    def __init__(self, deployment, factory, form: str, policy: ResynthesisPolicy):
        self.form, self.factory, self.policy = form, factory, policy
        self.resyntheses = 0
        if form == "coefficient":
            self.session = factory(deployment.path("specialist_coefficient"))
        else:
            self.assets = deployment.presynth()
            self.session, self.current, self.uses = None, None, 0

    def __call__(self, x, coefficients):
        times, resynth = {}, False
        if self.form == "presynth":
            if self.policy.needed(self.current, coefficients, self.uses):
                t = time.perf_counter()
                model = synthesize(self.assets.template, self.assets.table, self.assets.bases,
                                   coefficients)
                self.session = self.factory(self.assets.path, model)
                times["synthesis"] = (time.perf_counter() - t) * 1e3
                self.current, self.uses, resynth = coefficients, 0, True
                self.resyntheses += 1
            self.uses += 1
            feeds = {"image": x}
        else:
            feeds = {"image": x, "coefficients": coefficients[None]}
        t = time.perf_counter()
        logits = np.asarray(self.session.run(feeds)["logits"], np.float32)[0]
        times["specialist"] = (time.perf_counter() - t) * 1e3
        return logits, times, resynth


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


class TwoStageRunner:
    """Run frames through both stages; see the module docstring.

    ``light`` and ``specialist`` are backend factories (``factory(path, model_bytes=None)``
    -> session); ``threshold`` is the early-exit confidence (None: never exit).
    """

    def __init__(self, deployment, light: Callable, specialist: Callable,
                 threshold: float | None = None, specialist_form: str = "presynth",
                 mode: str = "pipelined", queue_size: int = 4,
                 policy: ResynthesisPolicy | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if specialist_form not in FORMS:
            raise ValueError(f"specialist_form must be one of {FORMS}")
        self.deployment, self.light, self.specialist = deployment, light, specialist
        self.threshold, self.form, self.mode = threshold, specialist_form, mode
        self.queue_size = queue_size
        self.policy = policy or ResynthesisPolicy()
        self.resyntheses = 0

    # One frame's work, shared by both modes.
    def _first(self, stage, index, frame, submitted):
        logits, coeff, ms = stage(frame[0])
        probs = softmax(logits)
        label = int(np.argmax(probs))
        exits = self.threshold is not None and float(probs[label]) >= self.threshold
        return (index, frame, submitted, coeff, {"lightweight": ms}, label, float(probs[label]), exits)

    def _second(self, stage, item) -> Result:
        index, frame, submitted, coeff, times, label, conf, exits = item
        resynth = False
        if exits:
            answer = "lightweight"
        else:
            logits, extra, resynth = stage(frame[1], coeff)
            times = {**times, **extra}
            probs = softmax(logits)
            label, conf, answer = int(np.argmax(probs)), float(np.max(probs)), "specialist"
        return Result(index, label, self.deployment.labels[label], conf, answer, times, resynth,
                      (time.perf_counter() - submitted) * 1e3)

    def run(self, frames: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[Result]:
        """Results in input order for frames of (lightweight input, specialist input)."""
        if self.mode == "sequential":
            return self._run_sequential(frames)
        return self._run_pipelined(frames)

    def _run_sequential(self, frames):
        light = _LightStage(self.deployment, self.light)
        spec = _SpecialistStage(self.deployment, self.specialist, self.form, self.policy)
        try:
            for index, frame in enumerate(frames):
                item = self._first(light, index, frame, time.perf_counter())
                yield self._second(spec, item)
        finally:
            self.resyntheses = spec.resyntheses

    def _run_pipelined(self, frames):
        stop = threading.Event()
        q_in, q_mid, q_out = (queue.Queue(self.queue_size) for _ in range(3))
        spec_holder = {}

        def put(q, item):
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def get(q):
            while not stop.is_set():
                try:
                    return q.get(timeout=0.05)
                except queue.Empty:
                    continue
            return _DONE

        def fail(exc):
            # Hand the error to the caller even if q_out is full, then stop everyone.
            try:
                q_out.put_nowait(_Failure(exc))
            except queue.Full:
                try:
                    q_out.get_nowait()
                except queue.Empty:
                    pass
                q_out.put_nowait(_Failure(exc))
            stop.set()

        def feeder():
            try:
                for index, frame in enumerate(frames):
                    if not put(q_in, (index, frame, time.perf_counter())):
                        return
                put(q_in, _DONE)
            except BaseException as e:  # the frame source failed
                fail(e)

        def light_worker():
            try:
                stage = _LightStage(self.deployment, self.light)  # created on this thread
                while True:
                    item = get(q_in)
                    if item is _DONE:
                        put(q_mid, _DONE)
                        return
                    if not put(q_mid, self._first(stage, *item)):
                        return
            except BaseException as e:
                fail(e)

        def specialist_worker():
            try:
                stage = _SpecialistStage(self.deployment, self.specialist, self.form, self.policy)
                spec_holder["stage"] = stage
                while True:
                    item = get(q_mid)
                    if item is _DONE:
                        put(q_out, _DONE)
                        return
                    if not put(q_out, self._second(stage, item)):
                        return
            except BaseException as e:
                fail(e)

        threads = [threading.Thread(target=f, name=f"basisnet-{f.__name__}", daemon=True)
                   for f in (feeder, light_worker, specialist_worker)]
        for t in threads:
            t.start()
        try:
            while True:
                item = get(q_out)
                if item is _DONE and stop.is_set():
                    # Stopped by a failure: drain what is queued; the failure comes last.
                    try:
                        item = q_out.get_nowait()
                    except queue.Empty:
                        return
                if item is _DONE:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=1.0)
            if "stage" in spec_holder:
                self.resyntheses = spec_holder["stage"].resyntheses
