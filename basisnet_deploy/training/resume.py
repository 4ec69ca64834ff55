"""Resumable runs: state saved at every completed epoch, clean stops on SIGINT/SIGTERM.

The resume state lives beside the checkpoint, in ``.<out>.resume/`` (the checkpoint directory
itself is only ever written whole, by ``model.checkpoint.save``). It is a
``tf.train.CheckpointManager`` of every model weight, every optimizer variable (its step
counter included) and the number of completed epochs, plus ``run.json``: the fingerprint of
the command (data set, architecture, preprocessing, settings). The data order, augmentation
draws and basis-dropout draws are functions of (seed, epoch, step), so a resumed run goes on
exactly as an uninterrupted one would. The state is removed once the checkpoint is written.
"""

from __future__ import annotations

import atexit
import json
import shutil
import signal
import tempfile
from pathlib import Path

import tensorflow as tf

from basisnet_deploy.common.errors import UserError


class TrainingInterrupted(UserError):
    """SIGINT or SIGTERM stopped training; the last completed epoch is saved."""


def resume_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(f".{out.name}.resume")


class ResumeState:
    """Save/restore of (weights, optimizer, epoch); only the chief keeps what it writes."""

    def __init__(self, directory: Path | None, variables: dict, fingerprint: dict, chief: bool):
        self.fingerprint, self.chief = fingerprint, chief
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.ckpt = tf.train.Checkpoint(epoch=self.epoch, **variables)
        self.directory = directory
        self._scratch = None
        where = directory if (chief or directory is None) else None
        if where is None and directory is not None:  # other workers: a throwaway directory
            self._scratch = Path(tempfile.mkdtemp(prefix="basisnet-worker-"))
            # Also when the run stops early (SIGINT/SIGTERM, an error): nothing in it is kept.
            atexit.register(shutil.rmtree, self._scratch, ignore_errors=True)
            where = self._scratch
        self.manager = (tf.train.CheckpointManager(self.ckpt, str(where), max_to_keep=1)
                        if where is not None else None)

    def restore(self, require: bool = False, restart_on_change=None) -> int:
        """The number of epochs (or steps) already completed (0 for a fresh run).

        State saved with other settings is refused, naming them; with ``restart_on_change``
        (a ``say`` function) it is removed instead, said, and the run starts fresh."""
        run = self.directory / "run.json" if self.directory else None
        found = run is not None and run.is_file() and tf.train.latest_checkpoint(str(self.directory))
        if not found:
            if require:
                raise UserError(f"--resume: no saved state in {self.directory}; run without --resume")
            return 0
        saved = json.loads(run.read_text())
        if saved != self.fingerprint:
            changed = sorted(k for k in set(saved) | set(self.fingerprint)
                             if saved.get(k) != self.fingerprint.get(k))
            if restart_on_change is None:
                raise UserError(f"{self.directory}: an interrupted run with different settings "
                                f"({', '.join(changed)}) is saved there; repeat its command, or "
                                "delete that directory to start over")
            restart_on_change(f"{self.directory}: the interrupted run saved there had other "
                              f"settings ({', '.join(changed)}); starting over")
            shutil.rmtree(self.directory)
            self.manager = tf.train.CheckpointManager(self.ckpt, str(self.directory), max_to_keep=1)
            return 0
        self.ckpt.restore(tf.train.latest_checkpoint(str(self.directory))).expect_partial()
        return int(self.epoch.numpy())

    def save(self, completed_epochs: int) -> None:
        self.epoch.assign(completed_epochs)
        if self.manager is None:
            return
        self.manager.save(checkpoint_number=completed_epochs)  # every worker: collectives
        if self.chief:
            (self.directory / "run.json").write_text(json.dumps(self.fingerprint, sort_keys=True))

    def finish(self) -> None:
        """Training done and the checkpoint written: the resume state is no longer needed."""
        for d in (self.directory if self.chief else None, self._scratch):
            if d is not None:
                shutil.rmtree(d, ignore_errors=True)


class StopSignals:
    """Turn the first SIGINT/SIGTERM into a flag the loop checks after each step; a second
    one interrupts at once. Restores the previous handlers on exit."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no handlers, stop only by exception
                pass
        return self

    def _handle(self, signum, frame):
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False
