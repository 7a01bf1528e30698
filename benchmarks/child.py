"""Entry point of one measured subprocess: ``python -m benchmarks.child MODULE:FUNC RESULT_PATH``, its arguments as
JSON on stdin (they carry credentials, which a command line shows to every process).

It reports its own peak RSS (``VmHWM``: the high-water mark of this process's memory since it was exec'd) and that
of the programs it ran and waited for (``RUSAGE_CHILDREN``: ``aws``, ``ffmpeg``). Why not the parent's ``wait4``:
Linux carries the *forking* process's high-water mark into the child's ``ru_maxrss`` across ``exec``, so every
child would show at least the harness's own RSS (which holds the emulator, S3 server and generated indexes).
"""

from __future__ import annotations

import importlib
import json
import re
import resource
import sys
from pathlib import Path


def peak_rss_kib() -> int:
    """This process's peak RSS since exec, or that of the largest program it waited for, in KiB."""
    status = Path("/proc/self/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    own = int(match.group(1)) if match else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def main(argv: list[str]) -> None:
    target, out = argv
    args = json.loads(sys.stdin.buffer.read())
    module, func = target.split(":")
    result = getattr(importlib.import_module(module), func)(args)
    result["peak_rss_kib"] = peak_rss_kib()
    Path(out).write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
