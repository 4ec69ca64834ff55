"""Quiet by default: native libraries' chatter (TensorFlow's C++ logs, converter prints) is
swallowed unless ``-v`` / ``BASISNET_VERBOSE=1`` asks for it."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile

VERBOSE_ENV = "BASISNET_VERBOSE"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def set_verbosity(on: bool) -> None:
    """Before TensorFlow is imported: its C++ log level and the Python loggers it uses."""
    if on:
        os.environ[VERBOSE_ENV] = "1"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        for name in ("absl", "tensorflow", "tf2onnx", "onnxruntime", "h5py"):
            logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def quiet_native():
    """Send file descriptors 1 and 2 to a scratch file while native code runs (converter
    prints, C++ logs); nothing is hidden with ``-v``. Python's own streams are flushed first."""
    if verbose():
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no real descriptors (embedded, some test runners)
        yield
        return
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
