"""The whole sandbox at once: Genesys Cloud tenant emulator, PureConnect site, S3, webhook receiver.

``Sandbox`` starts them on loopback, writes their addresses and sandbox credentials to
``$GENESYS_HOME/sandbox/endpoints.json`` and removes the file when it stops, so a stale file never points
at servers that are gone. ``SandboxEndpoints.to_env()`` is the bridge to the resources: the same
environment variables a live deployment sets, filled with the sandbox's values.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from genesys_assets import settings
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
        # Sandbox credentials only, but still a credential: readable by this user alone.
        fd = os.open(self.endpoints_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(dataclasses.asdict(self.endpoints), handle, indent=2)
        return self

    def stop(self) -> None:
        """Stop both servers and withdraw the endpoints; each step runs even if one before it is interrupted (a
        second Ctrl-C)."""
        try:
            if self.endpoints is not None:  # published by this sandbox, not another one's in the same home
                self.endpoints_file.unlink(missing_ok=True)
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
