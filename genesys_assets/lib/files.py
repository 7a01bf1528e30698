"""Writing a file so that no reader, and no crash, ever sees half of it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, data: bytes | None = None, writer: Callable[[str], None] | None = None) -> None:
    """Write ``data`` (or let ``writer`` fill the temporary path it is given) to a temporary file in ``path``'s
    folder, then rename it over ``path``: a reader sees the old file or the new one, a crash leaves the old one.
    The file is readable by this user alone (``mkstemp``'s 0o600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        if writer is not None:
            writer(tmp)
        else:
            Path(tmp).write_bytes(data or b"")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
