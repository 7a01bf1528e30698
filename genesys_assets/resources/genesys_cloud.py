"""``GenesysCloudResource``: the Dagster resource for the Genesys Cloud Platform API.

Configure it with a region (``us_east_1``, ``eu_west_1``... all 17 Genesys Cloud regions) or explicit base
URLs (the sandbox emulator), and the OAuth client credentials through ``dg.EnvVar``. ``get_client()``
returns the one thread-safe :class:`GenesysCloudClient` of this resource instance, so every worker thread
of a step shares one HTTP session, one token and one rate limiter, which is what Genesys counts its
limits against.

    genesys = GenesysCloudResource(
        region=dg.EnvVar("GENESYS_REGION"),
        client_id=dg.EnvVar("GENESYS_CLIENT_ID"),
        client_secret=dg.EnvVar("GENESYS_CLIENT_SECRET"),
    )
    client = genesys.get_client()
    for page in client.run_details_job({"interval": "2024-01-15T00:00:00Z/2024-01-16T00:00:00Z"}):
        landing.write(page.raw + b"\\n")
    context.add_output_metadata(client.stats())
"""

from __future__ import annotations

import threading
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from genesys_assets.resources.genesys_cloud_client import (
    SYNC_QUERY_RESULT_CAP,
    ClientSettings,
    ClientStats,
    DetailsJobPage,
    GenesysCloudClient,
    RateLimiter,
    parse_retry_after,
    path_template,
    scan_page_envelope,
)
from genesys_assets.resources.genesys_cloud_errors import (
    DetailsJobCancelled,
    DetailsJobError,
    DetailsJobExpired,
    DetailsJobFailed,
    DetailsJobTimeout,
    GenesysApiError,
    GenesysAuthError,
    GenesysConfigError,
    GenesysError,
    GenesysNotFoundError,
    GenesysPermissionError,
    GenesysRetriesExhausted,
    PaginationCapExceeded,
)
from genesys_assets.resources.genesys_cloud_regions import (
    REGION_DOMAINS,
    GenesysHosts,
    RegionConflictError,
    UnknownRegionError,
    region_hosts,
    region_of_host,
    resolve_hosts,
)

__all__ = [
    "REGION_DOMAINS",
    "SYNC_QUERY_RESULT_CAP",
    "ClientSettings",
    "ClientStats",
    "DetailsJobCancelled",
    "DetailsJobError",
    "DetailsJobExpired",
    "DetailsJobFailed",
    "DetailsJobPage",
    "DetailsJobTimeout",
    "GenesysApiError",
    "GenesysAuthError",
    "GenesysCloudClient",
    "GenesysCloudResource",
    "GenesysConfigError",
    "GenesysError",
    "GenesysHosts",
    "GenesysNotFoundError",
    "GenesysPermissionError",
    "GenesysRetriesExhausted",
    "PaginationCapExceeded",
    "RateLimiter",
    "RegionConflictError",
    "UnknownRegionError",
    "parse_retry_after",
    "path_template",
    "region_hosts",
    "region_of_host",
    "resolve_hosts",
    "scan_page_envelope",
]

_SECRET_FIELDS = frozenset({"client_id", "client_secret"})
_CLIENT_LOCK = threading.Lock()


def _resolved(value: Any) -> Any:
    """An ``EnvVar`` left unresolved (resource used outside a Dagster run) → its value."""
    if isinstance(value, dg.EnvVar):
        return value.get_value()
    return value


class GenesysCloudResource(dg.ConfigurableResource):
    """Genesys Cloud Platform API access: OAuth client credentials, retries, rate limit, paging helpers."""

    region: str | None = Field(
        default=None,
        description="Genesys Cloud region, e.g. us_east_1, eu_west_1, ap_southeast_2 (17 regions). With hosts "
        "given explicitly below it must match theirs when they are a region's own, and otherwise names the region "
        "behind them (a proxy) for the residency check.",
    )
    api_base_url: str | None = Field(
        default=None, description="Explicit API base URL (e.g. the sandbox emulator); overrides the region's."
    )
    login_base_url: str | None = Field(
        default=None,
        description="Explicit OAuth base URL. Defaults to the region's login host (also when api_base_url is a "
        "region's API host), else to the API origin (the emulator serves /oauth/token there).",
    )
    client_id: str = Field(description="OAuth client id (Client Credentials grant). Use dg.EnvVar.")
    client_secret: str = Field(description="OAuth client secret. Use dg.EnvVar.")
    requests_per_second: float = Field(
        default=5.0,
        description="Client-side limit shared by all threads of the process; Genesys allows 300 "
        "requests/minute per token by default. 0 disables it.",
    )
    max_attempts: int = Field(default=6, description="Attempts per call on 429/5xx/connection errors.")
    request_deadline_seconds: float = Field(
        default=300.0, description="Total time one call may take, retries and waits included."
    )
    timeout_seconds: float = Field(default=60.0, description="Connect/read timeout of one HTTP attempt.")
    backoff_base_seconds: float = Field(default=1.0, description="First backoff ceiling (full jitter).")
    backoff_max_seconds: float = Field(default=60.0, description="Largest backoff ceiling.")
    retry_after_max_seconds: float = Field(
        default=300.0, description="Retry-After values above this are treated as this (absurd values)."
    )
    job_poll_initial_seconds: float = Field(default=10.0, description="First details-job poll interval.")
    job_poll_max_seconds: float = Field(default=120.0, description="Poll interval cap (doubles up to it).")
    job_deadline_seconds: float = Field(
        default=3600.0, description="A job still QUEUED/PENDING after this is deleted; conversation_details then "
        "re-runs the day in its next, narrower windows, webchat_archive fails the step."
    )
    max_connections: int = Field(default=32, description="HTTP connection pool size (≥ worker threads).")
    extra_headers: dict[str, str] = Field(
        default={}, description="Headers added to every request (tests send X-Sandbox-Fault)."
    )

    _client: GenesysCloudClient | None = PrivateAttr(default=None)

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name == "extra_headers" and value:  # a header can carry a credential: names only
                value = dict.fromkeys(value, "**********")
            yield name, ("**********" if name in _SECRET_FIELDS and value else value)

    def hosts(self) -> GenesysHosts:
        """API and login base URLs this resource talks to; a config error names what is inconsistent."""
        try:
            return resolve_hosts(
                _resolved(self.region) or None,
                _resolved(self.api_base_url) or None,
                _resolved(self.login_base_url) or None,
            )
        except (UnknownRegionError, RegionConflictError) as exc:
            raise GenesysConfigError(str(exc)) from None

    def client_settings(self) -> ClientSettings:
        """The client's settings (everything but the credentials)."""
        hosts = self.hosts()
        return ClientSettings(
            api_base_url=hosts.api_base_url,
            login_base_url=hosts.login_base_url,
            requests_per_second=self.requests_per_second or None,
            max_attempts=self.max_attempts,
            request_deadline_seconds=self.request_deadline_seconds,
            timeout_seconds=self.timeout_seconds,
            backoff_base_seconds=self.backoff_base_seconds,
            backoff_max_seconds=self.backoff_max_seconds,
            retry_after_max_seconds=self.retry_after_max_seconds,
            job_poll_initial_seconds=self.job_poll_initial_seconds,
            job_poll_max_seconds=self.job_poll_max_seconds,
            job_deadline_seconds=self.job_deadline_seconds,
            max_connections=self.max_connections,
            extra_headers=dict(self.extra_headers or {}),
        )

    def get_client(self) -> GenesysCloudClient:
        """The shared client of this resource instance (built on first use, then reused by all threads)."""
        client = self._client
        if client is None:
            with _CLIENT_LOCK:
                client = self._client
                if client is None:
                    client = GenesysCloudClient(
                        self.client_settings(),
                        client_id=_resolved(self.client_id),
                        client_secret=_resolved(self.client_secret),
                    )
                    self._client = client
        return client

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Build the client up front so a bad region or missing credentials fail at step start.
        self.get_client()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        client = self._client
        if client is not None:
            client.close()
