"""Quiet by default: native libraries' chatter (TensorFlow's C++ logs, converter prints) is
swallowed unless ``-v`` / ``BASISNET_VERBOSE=1`` asks for it."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import re
import tempfile
import threading

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
    with captured_native():
        yield


class CapturedText:
    """What :func:`captured_native` caught; ``text`` is set when the block ends."""

    def __init__(self):
        self.text = ""


@contextlib.contextmanager
def captured_native():
    """Like :func:`quiet_native`, but keeps what native code wrote to file descriptors 1 and 2
    (``with captured_native() as log: ...``, then ``log.text``) for the caller to read, e.g.
    for the op or shader a GPU accelerator refused. With ``-v`` it is also written through."""
    log = CapturedText()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:
        yield log
        return
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield log
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            log.text = sink.read().decode("utf-8", "replace")
            if verbose():
                sys.stderr.write(log.text)


# absl/glog lines (TensorFlow's C++ start-up notices), absl's pre-init warning, and the INFO
# level of TFLite's minimal logger ("INFO: Created TensorFlow Lite XNNPACK delegate for
# CPU.", once per interpreter); its WARNING and ERROR lines still pass.
# LiteRT's environment also warns, at every start, about the NPU and vendor compiler plugins
# it looks for and this machine lacks (OpenVINO's plugin, with its "└ Could not load" line).
_NATIVE_LOG = re.compile(rb"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\]]+\] |WARNING: All log "
                         rb"messages before absl::InitializeLog\(\) is called|INFO: |"
                         rb"WARNING: \[(npu_registry|compiler_plugin)\.cc:\d+\] |"
                         rb"\xe2\x94\x94 Could not load shared library .*(openvino|Dispatch|CompilerPlugin))")


@contextlib.contextmanager
def filter_native_logs():
    """Drop native log lines (``_NATIVE_LOG``: TensorFlow's C++ start-up notices and LiteRT's
    INFO lines, which ignore TF_CPP_MIN_LOG_LEVEL) from file descriptor 2; everything else
    passes through as written."""
    if verbose():
        yield
        return
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:
        yield
        return
    os.dup2(write_end, 2)
    os.close(write_end)
    pump = threading.Thread(target=_pump, args=(read_end, saved), daemon=True)
    pump.start()
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the pump sees EOF
        pump.join(timeout=5)
        os.close(saved)


def _pump(read_end: int, out: int) -> None:
    pending = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(read_end, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            data = b"".join(ln + b"\n" for ln in lines if not _NATIVE_LOG.match(ln))
            if b"\r" in pending and not _NATIVE_LOG.match(pending):  # a progress bar redraw
                data, pending = data + pending, b""
            if data:
                os.write(out, data)
        if pending and not _NATIVE_LOG.match(pending):
            os.write(out, pending)
    os.close(read_end)


def silence_native_exit() -> None:
    """Unless ``-v``: send file descriptor 2 to /dev/null for what is left of the process.
    For a console command that has said everything: LiteRT's accelerator registry logs each
    accelerator it destroys at exit, after Python's last line."""
    if verbose():
        return
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
