"""Files the tool writes and reads: atomic directory writes and content digests."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def staged_directory(target: str | os.PathLike):
    """Yield an empty temporary sibling of ``target``; on success it replaces ``target``.

    On any exception the temporary directory is removed and ``target`` is untouched, so a
    failed write never leaves a half-written result behind.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old)
        else:
            tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
