"""Synthesized specialist sessions from a pool of model buffers.

A session made from model bytes keeps reading those bytes while it runs (LiteRT builds the
model on the buffer without a copy). So a buffer that synthesis writes into must not belong
to a session still in use: :class:`Synthesizer` owns a fixed pool of buffers, and each
:class:`SynthesizedModel` returns its buffer to the pool when the last frame that holds it
releases it. With the pool sized by the runner, building never waits for ever, and memory
stays bounded.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

import numpy as np

from basisnet_deploy.artifacts.synthesis import Presynth, synthesize


@dataclass
class SynthesizedModel:
    """A specialist session for one coefficient set, shared by the frames that hold it."""

    session: object
    coefficients: np.ndarray  # [L, K] it was synthesized from
    _release: object  # called once when the last holder releases it
    _holders: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hold(self) -> "SynthesizedModel":
        with self._lock:
            if self._holders <= 0:
                raise RuntimeError("a released synthesized model cannot be held again")
            self._holders += 1
        return self

    def release(self) -> None:
        with self._lock:
            self._holders -= 1
            last = self._holders == 0
        if last:
            self.session = None  # drop the session before its buffer is written again
            self._release()


class Synthesizer:
    """Builds :class:`SynthesizedModel` s: mix the bases, patch a free buffer, open a session."""

    def __init__(self, presynth: Presynth, factory, buffers: int, stop: threading.Event | None = None):
        self.presynth, self.factory, self.stop = presynth, factory, stop
        self.free: queue.Queue = queue.Queue()
        for _ in range(buffers):
            self.free.put(object())  # a slot; the reference synthesize() allocates its bytes

    def build(self, coefficients: np.ndarray) -> SynthesizedModel:
        slot = self._take()
        try:
            model = synthesize(self.presynth.template, self.presynth.table, self.presynth.bases,
                               coefficients)
            session = self.factory(self.presynth.path, model)
        except BaseException:
            self.free.put(slot)
            raise
        return SynthesizedModel(session, np.array(coefficients, np.float32),
                                lambda: self.free.put(slot))

    def _take(self):
        while self.stop is None or not self.stop.is_set():
            try:
                return self.free.get(timeout=0.05)
            except queue.Empty:
                continue
        raise _Stopped()


class _Stopped(Exception):
    """The pipeline stopped while synthesis waited for a buffer."""
