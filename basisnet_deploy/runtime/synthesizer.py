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

from basisnet_deploy.artifacts.fast_synthesis import FastSynthesizer
from basisnet_deploy.artifacts.synthesis import Presynth, synthesize

BASES_KINDS = ("float32", "int8")  # which copy of the bases synthesis mixes


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


def model_bytes_fn(presynth: Presynth, compact: dict | None = None):
    """coefficients [L, K] -> the synthesized model's bytes.

    Int8 templates go through the fused kernel (``artifacts.fast_synthesis``): with the float32
    bases it writes exactly the bytes of the reference ``synthesize``; with ``compact`` (int8)
    bases, the bytes of ``compact_bases.synthesize_reference``. Float templates use the
    reference. Each call returns a fresh ``bytes`` copy: a session keeps reading its model
    bytes, so the kernel's buffer, patched again next call, must never be one.
    """
    if all(p.dtype == "int8" for p in presynth.table):
        fast = (FastSynthesizer(presynth.template, presynth.table, compact=compact) if compact
                else FastSynthesizer(presynth.template, presynth.table, bases=presynth.bases))
        return lambda coefficients: bytes(fast.synthesize(coefficients))
    if compact:
        raise ValueError("int8 (compact) bases need an int8 template")
    return lambda coefficients: synthesize(presynth.template, presynth.table, presynth.bases,
                                           coefficients)


class Synthesizer:
    """Builds :class:`SynthesizedModel` s: synthesize the model bytes, open a session.

    The pool bounds how many synthesized sessions (each with its own copy of the model) live
    at once; one synthesis thread uses it (the fused kernel is not thread-safe).
    """

    def __init__(self, presynth: Presynth, factory, buffers: int, stop: threading.Event | None = None,
                 compact: dict | None = None):
        self.presynth, self.factory, self.stop = presynth, factory, stop
        self.model_bytes = model_bytes_fn(presynth, compact)
        self.free: queue.Queue = queue.Queue()
        for _ in range(buffers):
            self.free.put(object())

    def build(self, coefficients: np.ndarray) -> SynthesizedModel:
        slot = self._take()
        try:
            session = self.factory(self.presynth.path, self.model_bytes(coefficients))
        except BaseException:
            self.free.put(slot)
            raise
        return SynthesizedModel(session, np.array(coefficients, np.float32),
                                lambda: self._free(slot, session))

    def _free(self, slot, session) -> None:
        """The last holder let go: free the session (a GPU session holds device memory),
        then its buffer."""
        release = getattr(self.factory, "release", None)
        if release is not None:
            release(session)
        self.free.put(slot)

    def _take(self):
        while self.stop is None or not self.stop.is_set():
            try:
                return self.free.get(timeout=0.05)
            except queue.Empty:
                continue
        raise _Stopped()


class _Stopped(Exception):
    """The pipeline stopped while synthesis waited for a buffer."""
