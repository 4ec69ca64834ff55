"""Files the tool writes and reads: owned, atomic directory writes, content digests, and the
one reader of files inside a directory the tool wrote (:func:`read_verified`).

A directory a command writes (an export, a checkpoint, Android assets) is staged in a hidden
sibling, marked as the tool's own with :data:`MARKER_FILE` (JSON: tool, version, kind), and
renamed into place. A command replaces only a directory it made: an existing non-empty
directory without the marker of the same kind is refused with one line before any work, as
are a symlinked ``--out``, a read-only one and one under a regular file. The staging
directory is removed on errors, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import threading
from pathlib import Path

from basisnet_deploy import __version__
from basisnet_deploy.common.errors import UserError
from basisnet_deploy.common.jsonable import dumps

TOOL = "basisnet-deploy"
MARKER_FILE = ".basisnet-deploy"
REPORT_MARKER = ".basisnet-report"  # a report folder's: the files it wrote (report/page.py)
KINDS = ("export", "checkpoint", "android-assets", "report")


class OutputError(UserError):
    pass


def marker(kind: str) -> dict:
    return {"tool": TOOL, "version": __version__, "kind": kind}


def read_marker(directory: Path) -> dict | None:
    """The marker of ``directory`` as a dict, or None where there is none or it is not ours."""
    try:
        data = json.loads((Path(directory) / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("tool") == TOOL else None


def owned(directory: Path, kind: str, legacy=None) -> bool:
    """True when ``directory`` is a ``kind`` output of this tool (marker, or ``legacy(dir)``)."""
    mark = read_marker(directory)
    if mark is not None:
        return mark.get("kind") == kind
    return bool(legacy and legacy(Path(directory)))


def check_output_dir(target, kind: str, option: str = "--out", legacy=None) -> Path:
    """Refuse, before any work and without writing anything, an output this command must not
    replace. ``legacy(dir) -> bool`` accepts outputs written before markers existed."""
    target = Path(target)
    if kind not in KINDS:
        raise ValueError(kind)
    try:
        here = Path.cwd().resolve()
    except OSError:  # a relative path means nothing from a deleted folder
        raise OutputError(f"{option} {target}: the current directory no longer exists; cd to an "
                          "existing folder and run the command again") from None
    if target.is_symlink():
        raise OutputError(f"{option} {target}: is a symbolic link; pass the directory it points "
                          f"to ({os.path.realpath(target)}) or a new path")
    if target.exists() and not target.is_dir():
        raise OutputError(f"{option} {target}: exists and is not a directory; choose a new path")
    if target.resolve() == here or target.resolve() in here.parents:
        raise OutputError(f"{option} {target}: is the current directory or holds it, which the "
                          f"command would replace; pass a new folder's path (e.g. {option} out)")
    parent = existing_ancestor(target.absolute().parent)
    if not parent.is_dir():
        raise OutputError(f"{option} {target}: {parent} is a file, not a directory; choose a path "
                          "under a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {target}: {parent} is not writable; choose a writable path")
    if target.is_dir():
        if not os.access(target, os.W_OK | os.X_OK | os.R_OK):
            raise OutputError(f"{option} {target}: the directory is read-only; make it writable "
                              "or choose a new path")
        entries = list(target.iterdir())
        if entries and not owned(target, kind, legacy):
            raise OutputError(f"{option} {target}: exists, is not empty and is not a basisnet-deploy "
                              f"{kind} directory (no {MARKER_FILE} marker of that kind); choose a "
                              "new or empty directory")
        # The tool's outputs hold files only: a folder in one (an export written into a
        # checkpoint) is not the tool's to delete with the output it replaces.
        nested = sorted(entry.name for entry in entries if entry.is_dir())
        if nested:
            raise OutputError(f"{option} {target}: holds the folder {nested[0]!r}, which replacing "
                              f"this {kind} would delete; move it out or choose another path")
    return target


# What an output file option may replace: a file that begins as the kind it writes (an empty
# one too: mktemp, touch).
_FILE_STARTS = {"JSON": lambda head: head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"", b"{", b"["),
                "PNG": lambda head: head == b"" or head.startswith(b"\x89PNG\r\n\x1a\n")}
# Files that mark a folder as the tool's: an export, a checkpoint, Android assets, a report.
TOOL_FOLDER_FILES = (MARKER_FILE, REPORT_MARKER, "manifest.json", "config.json")


def check_output_file(target, option: str, kind: str, folders=(), files=()) -> Path:
    """Refuse, before any work and without writing anything, an output file (``--json-out``,
    ``--plot``) that would replace what it must not: a file the command reads (``files``);
    for JSON, any path inside the folders it reads or writes (``folders``: its --out may not
    exist yet) or inside a folder the tool wrote (:data:`TOOL_FOLDER_FILES`), which a later
    command would refuse or misread; an existing file that is not ``kind`` ("JSON" or "PNG");
    a missing or read-only folder."""
    target = Path(target)
    parent = target.absolute().parent
    for path in map(Path, files):
        if path.exists() and target.exists() and os.path.samefile(path, target):
            raise OutputError(f"{option} {target}: the file {path}, which this command reads; "
                              "choose another path")
    if kind == "JSON":
        inside = [f for f in map(Path, folders) if parent.resolve().is_relative_to(f.resolve())]
        for folder in inside + ([parent] if _tool_folder(parent) else []):
            raise OutputError(f"{option} {target}: inside {folder}, a folder this tool reads or "
                              "writes; write the result outside it")
    if not parent.is_dir():
        raise OutputError(f"{option} {target}: its folder {parent} does not exist; create it or "
                          "choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {target}: {parent} is not writable; choose a writable path")
    if not target.exists():
        return target
    if not target.is_file():
        raise OutputError(f"{option} {target}: exists and is not a file; choose a new path")
    with open(target, "rb") as f:
        head = f.read(64)
    if not _FILE_STARTS[kind](head):
        raise OutputError(f"{option} {target}: exists and is not a {kind} file, so not an output "
                          f"of this tool; choose a new path (it replaces only {kind} files)")
    return target


def _tool_folder(folder: Path) -> bool:
    """Whether ``folder`` is one the tool wrote (its marker, a manifest.json or config.json)."""
    return folder.is_dir() and any((folder / name).exists() for name in TOOL_FOLDER_FILES)


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """``data`` at ``path``, whole or not at all: a temp file in the same folder, then rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (a dangling link: the link itself)."""
    while not path.exists() and path != path.parent:
        if path.is_symlink():  # a dangling link: report it as the blocker
            return path
        path = path.parent
    return path


@contextlib.contextmanager
def staged_directory(target: str | os.PathLike, kind: str, legacy=None, option: str = "--out"):
    """Yield an empty, marked temporary sibling of ``target``; on success it replaces ``target``.

    ``target`` is checked first (:func:`check_output_dir`). On any exception, Ctrl-C or SIGTERM
    the temporary directory is removed and ``target`` is untouched.
    """
    target = check_output_dir(target, kind, option, legacy)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_folder(target.parent, f".{target.name}.tmp-")
    except OSError as e:
        raise OutputError(f"{option} {target}: cannot create it ({e.strerror or e}); choose a "
                          "writable path") from None
    try:
        with _terminate_as_exit():
            (tmp / MARKER_FILE).write_text(json.dumps(marker(kind)) + "\n")
            yield tmp
            _replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _new_folder(parent: Path, prefix: str) -> Path:
    """A new folder of a unique name in ``parent``, with the umask's permissions (mkdtemp's
    are private, 0700: an output is not)."""
    for _ in range(100):
        folder = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            folder.mkdir(mode=0o777)
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(f"{parent}: no free name for a folder starting {prefix}")


def _replace(tmp: Path, target: Path) -> None:
    if not target.exists():
        tmp.rename(target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    target.rename(old)
    try:
        tmp.rename(target)
    except OSError:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM so that ``finally`` blocks clean up."""


@contextlib.contextmanager
def _terminate_as_exit():
    """While active, SIGTERM raises :class:`Terminated` (exit 143) instead of killing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def inside(directory, name: str) -> Path:
    """``directory / name``, resolved (symlinks followed); refused unless it stays inside
    ``directory``: the file names a manifest records are untrusted."""
    root = Path(directory).resolve()
    path = (root / name).resolve()
    if path == root or root not in path.parents:
        raise UserError(f"{Path(directory) / name}: resolves to {path}, outside the export "
                        f"directory {root}; refusing to read it (re-run basisnet-deploy export)")
    return path


def read_verified(directory, name: str, sha256: str | None = None, size: int | None = None,
                  what: str = "file") -> bytes:
    """The bytes of ``directory / name``: every read of a file of an export goes through here.

    Refused (a :class:`UserError` naming the file and ``what`` it is) when the name resolves
    outside ``directory`` (a symbolic link or ``..``), when it is missing or unreadable, and
    when its size or sha256 differ from ``size`` / ``sha256`` (each checked where given).
    """
    path = inside(directory, name)
    if not path.is_file():
        raise UserError(f"{path}: missing ({what}); re-run basisnet-deploy export")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e}); check its permissions") from None
    if (size is not None and len(data) != size) or (sha256 is not None and sha256_hex(data) != sha256):
        expected = f" ({size} bytes expected)" if size is not None else ""
        raise UserError(f"{path}: {len(data)} bytes, sha256 differs from the manifest{expected} "
                        f"({what}): truncated or modified; re-run basisnet-deploy export")
    return data


def write_json_atomically(path: Path, data) -> None:
    """``data`` as strict JSON at ``path`` (non-finite figures as null), atomically: a temp file
    in the same folder, then rename."""
    write_bytes_atomically(path, (dumps(data) + "\n").encode())
