"""The whole sandbox at once: Genesys Cloud tenant emulator, PureConnect site, S3, webhook receiver.

``Sandbox`` starts them on loopback, writes their addresses and sandbox credentials to
``$GENESYS_HOME/sandbox/endpoints.json`` and removes the file when it stops, so its file does not outlive its
servers (unless the sandbox is killed). Several sandboxes may run in one home (a ``demo`` started while a
``sandbox`` runs): the file is the latest one's, and a sandbox removes it only while it is still the one it wrote,
so stopping an older sandbox does not take a running one's endpoints away, and when the newer one stops first the
file goes back to the older one (each running sandbox's endpoints are also in ``sandbox/running/``).
``SandboxEndpoints.to_env()`` is the bridge to the resources: the same environment variables a live deployment
sets, filled with the sandbox's values.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from genesys_assets import settings
from genesys_assets.lib.day_lock import file_lock
from genesys_assets.lib.files import atomic_write
from genesys_assets.sandbox.directory import DEFAULT_SEED
from genesys_assets.sandbox.genesys_emulator import FaultConfig, GenesysEmulator
from genesys_assets.sandbox.pureconnect_site import build_site
from genesys_assets.sandbox.s3 import (
    SANDBOX_ACCESS_KEY,
    SANDBOX_REGION,
    SANDBOX_SECRET_KEY,
    STAGING_BUCKET,
    SandboxS3,
)

# Only ever hashes the sandbox's invented customer numbers; live mode must set its own secret key.
SANDBOX_PII_HASH_KEY = "sandbox-pii-hash-key-not-for-production"
# The endpoints file's mark of the sandbox that wrote it; not a SandboxEndpoints field, so readers skip it.
_OWNER_KEY = "owner"


@dataclass(frozen=True)
class SandboxEndpoints:
    genesys_api_base_url: str
    client_id: str
    client_secret: str
    s3_endpoint_url: str
    pureconnect_uri: str
    webhook_url: str
    staging_bucket: str
    mappings_dir: str
    site_timezone: str

    def to_env(self) -> dict[str, str]:
        """The live-mode environment variables, pointed at the sandbox."""
        return {
            "GENESYS_API_BASE_URL": self.genesys_api_base_url,
            "GENESYS_CLIENT_ID": self.client_id,
            "GENESYS_CLIENT_SECRET": self.client_secret,
            "PURECONNECT_URI": self.pureconnect_uri,
            "PURECONNECT_SITE_TIMEZONE": self.site_timezone,
            "PURECONNECT_RECORDING_AUDIO": "raw",  # the sandbox's recordings are generated tones, never masked
            "GENESYS_MAPPINGS_DIR": self.mappings_dir,
            "GENESYS_S3_ENDPOINT_URL": self.s3_endpoint_url,
            "GENESYS_STAGING_BUCKET": self.staging_bucket,
            "AWS_ACCESS_KEY_ID": SANDBOX_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SANDBOX_SECRET_KEY,
            "AWS_REGION": SANDBOX_REGION,
            "DATA_LAKE_WEBHOOK_URL": self.webhook_url,
            "GENESYS_PII_HASH_KEY": SANDBOX_PII_HASH_KEY,
        }

    @classmethod
    def load(cls, path: Path | None = None) -> SandboxEndpoints | None:
        path = path or settings.endpoints_file()
        if not path.is_file():
            return None
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(path.read_text()).items() if k in fields})


ENDPOINTS_LOCK_TIMEOUT = 30.0  # seconds; a publish or a withdraw holds the lock for a few file operations


class EndpointsLockTimeout(RuntimeError):
    """Another sandbox of this home held the endpoints file's lock for longer than any publish or withdraw takes."""


def _endpoints_lock(endpoints_file: Path) -> AbstractContextManager[None]:
    """Held by a sandbox while it writes or withdraws the home's endpoints file, so another sandbox's write
    cannot land between a withdraw's check and its unlink."""
    lock = endpoints_file.with_name(endpoints_file.name + ".lock")

    def timed_out() -> EndpointsLockTimeout:
        return EndpointsLockTimeout(
            f"another sandbox has held {lock} for over {ENDPOINTS_LOCK_TIMEOUT:g}s; stop the other sandboxes using "
            f"{endpoints_file.parent.parent} (GENESYS_HOME) and start again")

    return file_lock(lock, ENDPOINTS_LOCK_TIMEOUT, timed_out)


def _json(content: dict[str, Any]) -> bytes:
    """An endpoints file's bytes (written with ``atomic_write``: whole, and this user's alone, as sandbox
    credentials still are credentials)."""
    return json.dumps(content, indent=2).encode()


def _process_started(pid: int) -> str:
    """When process ``pid`` started (clock ticks after boot, from /proc), which tells a sandbox from a later process
    that was given its pid; "" where there is no /proc (macOS), where the pid alone is checked. OSError if the
    process is gone."""
    if not Path("/proc/self/stat").exists():
        return ""
    return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[19].decode()  # a name may be any bytes


def _latest_running(running: Path) -> dict[str, Any] | None:
    """The endpoints of the most recently started sandbox still running in this home, if any. The entries of
    sandboxes whose process is gone (killed, so never withdrawn) are removed, not handed on, also when another
    process has been given its pid since."""
    entries = sorted(running.glob("*.json"), key=lambda entry: entry.stat().st_mtime_ns, reverse=True)
    for entry in entries:
        try:
            pid, started, _ = entry.stem.split("-", 2)
            os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
            if _process_started(int(pid)) != started:
                raise ProcessLookupError(f"pid {pid} is another process now")
            content = json.loads(entry.read_text())
        except (ValueError, OSError):  # not a sandbox's entry, or its process is gone (or another user's since)
            entry.unlink(missing_ok=True)
            continue
        if isinstance(content, dict):
            return content
    return None


def apply_sandbox_env(endpoints: SandboxEndpoints | None = None) -> bool:
    """Fill unset environment variables from the running sandbox; False when no sandbox is running."""
    endpoints = endpoints or SandboxEndpoints.load()
    if endpoints is None:
        return False
    for key, value in endpoints.to_env().items():
        os.environ.setdefault(key, value)
    return True


class Sandbox:
    """Every sandbox service, deterministic from ``seed``; ``with Sandbox(home, start, end) as sb: ...``."""

    def __init__(
        self,
        home: Path,
        *,
        start: date,
        end: date,
        seed: int = DEFAULT_SEED,
        conversations_per_day: int = 2000,
        interactions_per_day: int = 300,
        faults: FaultConfig | None = None,
    ) -> None:
        self.dir = home / "sandbox"
        self.start_day, self.end_day = start, end
        self.seed = seed
        self.emulator = GenesysEmulator(
            self.dir / "genesys",
            seed=seed,
            conversations_per_day=conversations_per_day,
            faults=faults,
            historical_import_enabled=True,
        )
        self.s3 = SandboxS3()
        self._interactions_per_day = interactions_per_day
        self.endpoints: SandboxEndpoints | None = None
        # Unique to this sandbox, also among sandboxes of one process; the pid tells a person which process, and
        # with its start time whether that process still runs.
        self._owner = f"{os.getpid()}-{_process_started(os.getpid())}-{secrets.token_hex(8)}"

    @property
    def endpoints_file(self) -> Path:
        return self.dir / "endpoints.json"

    def start(self) -> Sandbox:
        """Build the site, start both servers, publish the endpoints; on any failure (Ctrl-C included) stop what
        already started, so no server outlives a start that did not finish."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Sandbox:
        self.dir.mkdir(parents=True, exist_ok=True)
        site = build_site(
            self.dir / "pureconnect",
            self.start_day,
            self.end_day,
            seed=self.seed,
            interactions_per_day=self._interactions_per_day,
        )
        self.emulator.start()
        self.s3.start()
        self.endpoints = SandboxEndpoints(
            genesys_api_base_url=self.emulator.base_url,
            client_id=self.emulator.client_id,
            client_secret=self.emulator.client_secret,
            s3_endpoint_url=self.s3.endpoint_url,
            pureconnect_uri=site.uri,
            webhook_url=f"{self.emulator.base_url}/__sandbox__/webhooks/data-lake",
            staging_bucket=STAGING_BUCKET,
            mappings_dir=str(site.mappings_dir),
            site_timezone=site.timezone,
        )
        self._publish_endpoints()
        return self

    @property
    def _running(self) -> Path:
        """One endpoints file per running sandbox of this home, so a stop can hand the home's file back."""
        return self.dir / "running"

    def _publish_endpoints(self) -> None:
        """This sandbox's endpoints become the home's (and are listed among the running sandboxes')."""
        assert self.endpoints is not None
        published = {**dataclasses.asdict(self.endpoints), _OWNER_KEY: self._owner}
        with _endpoints_lock(self.endpoints_file):
            self._running.mkdir(exist_ok=True)
            atomic_write(self._running / f"{self._owner}.json", _json(published))
            atomic_write(self.endpoints_file, _json(published))

    def _withdraw_endpoints(self) -> None:
        """Take this sandbox off the running list and, while the home's endpoints file is the one it wrote, hand it
        to the most recently started sandbox still running here (a ``sandbox`` a ``demo`` was started beside), or
        remove it. A file this sandbox did not write is left: a later one replaced it and may still be running, or it
        cannot be read as an endpoints object (corrupt, or an older version's sandbox half-way through writing it in
        place), not being provably ours. Neither fails the stop."""
        if not self.dir.exists():  # nothing to withdraw, and no folder for the lock
            return
        with _endpoints_lock(self.endpoints_file):
            (self._running / f"{self._owner}.json").unlink(missing_ok=True)
            try:
                published = json.loads(self.endpoints_file.read_text())
            except (OSError, ValueError):
                return
            if not (isinstance(published, dict) and published.get(_OWNER_KEY) == self._owner):
                return
            successor = _latest_running(self._running)
            if successor is None:
                self.endpoints_file.unlink(missing_ok=True)  # a sandbox of an older version takes no lock
            else:
                atomic_write(self.endpoints_file, _json(successor))

    def stop(self) -> None:
        """Stop both servers and withdraw the endpoints; each step runs even if one before it is interrupted (a
        second Ctrl-C)."""
        try:
            if self.endpoints is not None:  # this sandbox may have published them
                self._withdraw_endpoints()
                self.endpoints = None
        finally:
            try:
                self.s3.stop()
            finally:
                self.emulator.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
