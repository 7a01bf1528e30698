"""Where genesys-assets keeps its state, and which mode it runs in.

Everything lives under ``GENESYS_HOME`` (default ``./.genesys``): the lake, the DuckDB warehouse,
the sandbox's state and ``DAGSTER_HOME``, so run history survives restarts of the UI.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

SANDBOX = "sandbox"
LIVE = "live"


def genesys_home() -> Path:
    return Path(os.environ.get("GENESYS_HOME", ".genesys")).resolve()


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or genesys_home() / "dagster").resolve()


def sandbox_dir() -> Path:
    return genesys_home() / "sandbox"


def endpoints_file() -> Path:
    return sandbox_dir() / "endpoints.json"


def mode() -> str:
    """``GENESYS_MODE`` forces the mode; otherwise live exactly when live credentials are set. Half a credential
    is refused: running the sandbox quietly when the secret's variable was misspelt would look like success."""
    forced = os.environ.get("GENESYS_MODE", "").strip().lower()
    if forced:
        if forced not in (SANDBOX, LIVE):
            raise ValueError(f"GENESYS_MODE must be 'sandbox' or 'live', not {forced!r}")
        return forced
    given = [name for name in ("GENESYS_CLIENT_ID", "GENESYS_CLIENT_SECRET") if os.environ.get(name, "").strip()]
    if len(given) == 1:
        missing = "GENESYS_CLIENT_SECRET" if given == ["GENESYS_CLIENT_ID"] else "GENESYS_CLIENT_ID"
        raise ValueError(f"{given[0]} is set but {missing} is not: set both for live mode (a Genesys Cloud OAuth "
                         "client-credentials client), or GENESYS_MODE=sandbox to run on the sandbox")
    return LIVE if given else SANDBOX


def env_number(name: str, default: float, *, integer: bool = False, low: float | None = None,
               high: float | None = None) -> float:
    """A numeric setting from the environment (``default`` when unset or blank), refused with the variable's name
    and the allowed range when it is not a number or out of range, so a typo does not surface as a bare
    ``could not convert string to float`` from deep inside a sensor or check."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    kind = "a whole number" if integer else "a number"
    try:
        value: float = int(raw) if integer else float(raw)
    except ValueError:
        raise ValueError(f"{name} must be {kind}, got {raw!r}; unset it to use the default {default:g}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {raw!r}; unset it to use the default {default:g}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = " and ".join(f"{op} {b:g}" for op, b in ((">=", low), ("<=", high)) if b is not None)
        raise ValueError(f"{name} must be {bounds}, got {raw!r}; unset it to use the default {default:g}")
    return value


# Concurrency pools (dagster.yaml can only set a default; the CLI sets these at start).
GENESYS_API_POOL = "genesys_api"
WAREHOUSE_POOL = "warehouse"
POOL_LIMITS = {GENESYS_API_POOL: 4, WAREHOUSE_POOL: 1}
