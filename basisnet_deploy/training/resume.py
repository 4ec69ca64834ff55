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
import contextlib
import json
import shutil
import signal
import tempfile
from pathlib import Path

import tensorflow as tf

from basisnet_deploy.common.errors import StoppedBySignal, UserError, first_line
from basisnet_deploy.common.files import Terminated, write_json_atomically


class TrainingInterrupted(StoppedBySignal):
    """SIGINT or SIGTERM stopped training; the last completed epoch is saved."""


def resume_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(f".{out.name}.resume")


def _changed(saved, now, where: str = "") -> list[str]:
    """The keys whose values differ, as dotted paths into nested objects
    (``settings.batch_size: 64 -> 32``), so a refusal names the option that changed."""
    if not (isinstance(saved, dict) and isinstance(now, dict)):
        return [f"{where}: {saved!r} -> {now!r}"]
    out = []
    for key in sorted(set(saved) | set(now)):
        if saved.get(key) != now.get(key):
            out += _changed(saved.get(key), now.get(key), f"{where}.{key}" if where else key)
    return out


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

        State saved with other settings, or that cannot be read, is refused, naming the
        folder; with ``restart_on_change`` (a ``say`` function) it is removed instead, said,
        and the run starts fresh."""
        run = self.directory / "run.json" if self.directory else None
        found = run is not None and run.is_file() and tf.train.latest_checkpoint(str(self.directory))
        if not found:
            if require:
                raise UserError(f"--resume: no saved state in {self.directory}; run without --resume")
            return 0
        try:
            saved = json.loads(run.read_text())
        except (OSError, ValueError) as e:
            return self._unusable(f"its run.json cannot be read ({e})", restart_on_change)
        if saved != self.fingerprint:
            changed = _changed(saved, self.fingerprint)
            if restart_on_change is None:
                raise UserError(f"{self.directory}: an interrupted run with different settings "
                                f"({', '.join(changed)}) is saved there; repeat its command, or "
                                "delete that directory to start over")
            return self._unusable(f"the interrupted run saved there had other settings ({', '.join(changed)})",
                                  restart_on_change)
        try:
            status = self.ckpt.restore(tf.train.latest_checkpoint(str(self.directory)))
            status.assert_existing_objects_matched().expect_partial()
        except (tf.errors.OpError, AssertionError, ValueError) as e:
            return self._unusable(f"its saved state cannot be restored ({first_line(e)[:200]})", restart_on_change)
        return int(self.epoch.numpy())

    def _unusable(self, why: str, restart_on_change) -> int:
        """Saved state that cannot be resumed: refused, or (``restart_on_change``) removed."""
        if restart_on_change is None:
            raise UserError(f"{self.directory}: {why}; delete that directory to start over")
        restart_on_change(f"{self.directory}: {why}; starting over")
        remove_saved_state(self.directory)
        self.manager = tf.train.CheckpointManager(self.ckpt, str(self.directory), max_to_keep=1)
        return 0

    def save(self, completed_epochs: int) -> None:
        self.epoch.assign(completed_epochs)
        if self.manager is None:
            return
        self.manager.save(checkpoint_number=completed_epochs)  # every worker: collectives
        if self.chief:
            write_json_atomically(self.directory / "run.json", self.fingerprint)

    def finish(self) -> None:
        """Training done and the checkpoint written: the resume state is no longer needed."""
        for d in (self.directory if self.chief else None, self._scratch):
            if d is not None:
                shutil.rmtree(d, ignore_errors=True)


def remove_saved_state(directory: Path) -> None:
    """Remove what a :class:`ResumeState` writes in ``directory`` (its run.json and the
    checkpoint manager's files), then the folder if nothing else is in it."""
    for path in [directory / "run.json", directory / "checkpoint", *directory.glob("ckpt-*")]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    with contextlib.suppress(OSError):
        directory.rmdir()  # kept where something else is in it


class StopSignals:
    """Turn the first SIGINT/SIGTERM into a flag the loop checks after each step; a second
    one interrupts at once, as that signal would (SIGINT: KeyboardInterrupt, exit 130;
    SIGTERM: :class:`~basisnet_deploy.common.files.Terminated`, exit 143), ``finally``
    blocks still running. Restores the previous handlers on exit."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                if signal.getsignal(sig) is signal.SIG_IGN:
                    continue  # ignored by whoever started us (nohup, a shell's &): stays ignored
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no handlers, stop only by exception
                pass
        return self

    def _handle(self, signum, frame):
        if self.received is not None:
            if signum == signal.SIGTERM:
                raise Terminated(128 + signum)
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False
