"""The package picks Arrow's allocator for the process (see genesys_assets/__init__.py), and a user's choice wins."""

from __future__ import annotations

import os
import subprocess
import sys

_PROBE = "import genesys_assets, pyarrow as pa; print(pa.default_memory_pool().backend_name)"


def _backend(pool: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if pool is not None:
        env["ARROW_DEFAULT_MEMORY_POOL"] = pool
    return subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()


def test_system_allocator_by_default() -> None:
    assert _backend(None) == "system"


def test_environment_choice_is_kept() -> None:
    assert _backend("mimalloc") == "mimalloc"  # Arrow's own default, built on every platform
