"""The two refusals that come before any conversation data moves: data residency and the storage quota.

Residency: the archive may only be taken from a Genesys Cloud region listed in ``ALLOWED_REGIONS``. The region is
the one whose API host the resource talks to, else its configured ``region`` (``GENESYS_REGION``), normalised to
Genesys's names (``eu-west-1``, ``mypurecloud.ie`` and ``eu_west_1`` are the same region). An API on this machine
with no region named (the sandbox emulator) is in the region named ``sandbox``; any other host that is no
region's own (a proxy) must be given its region, or nothing is extracted. ``ALLOWED_REGIONS`` unset means
``sandbox`` only: a live deployment must list its regions explicitly, it is never allowed by default.

Quota: the day's conversation count (sync query ``totalHits``) times the measured average stored bytes per
record (from the manifests of recent days; a default measured on the sandbox until there are any) must fit
``ARCHIVE_QUOTA_MB`` (mebibytes).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from genesys_assets.resources.genesys_cloud_regions import UnknownRegionError, normalise_region, region_of_host

SANDBOX_REGION = "sandbox"
DEFAULT_ALLOWED_REGIONS = SANDBOX_REGION
DEFAULT_QUOTA_MB = 500.0
#: Stored (gzip) bytes per archived conversation, measured on the sandbox tenant (2,000 conversations/day, 424 of
#: them web messaging, 4 to 20 messages each: 512 bytes gzip, 2,309 raw), rounded up. Used until the lake holds
#: manifests of earlier days, whose own average then wins.
DEFAULT_BYTES_PER_RECORD = 600.0
MIB = 1024 * 1024


class ArchivePolicyError(RuntimeError):
    """A residency or quota refusal; the message names the limit and how to change it."""


def canonical_region(value: str) -> str:
    """Genesys's region name for ``value``; names Genesys does not know (``sandbox``) are kept, lower-cased."""
    try:
        return normalise_region(value)
    except UnknownRegionError:
        return value.strip().lower()


def effective_region(configured_region: str | None, api_base_url: str) -> str:
    """The region the data is read from: the API host's, else the configured one, else ``sandbox`` on loopback.

    The resource has already refused a configured region that contradicts its host (``resolve_hosts``).
    """
    host_region = region_of_host(api_base_url)
    if host_region:
        return host_region
    if configured_region and configured_region.strip():
        return canonical_region(configured_region)
    host = urlsplit(api_base_url).hostname or ""
    if _is_loopback(host):
        return SANDBOX_REGION
    raise ArchivePolicyError(
        f"Data residency: the Genesys Cloud API host {host!r} is not a region's own "
        "host and no GENESYS_REGION is set, so the region the data lives in is unknown. Nothing was extracted. "
        "Set GENESYS_REGION to the region behind that host."
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_allowed_regions(value: str | None) -> list[str]:
    """``"eu_west_1, eu-central-1"`` → canonical names; None/empty → the default (sandbox only)."""
    raw = value if value and value.strip() else DEFAULT_ALLOWED_REGIONS
    return sorted({canonical_region(v) for v in raw.split(",") if v.strip()})


def check_residency(region: str, allowed: Iterable[str]) -> None:
    """Refuse unless ``region`` is allowed."""
    allowed = list(allowed)
    if region not in allowed:
        raise ArchivePolicyError(
            f"Data residency: region {region!r} is not in ALLOWED_REGIONS ({', '.join(allowed) or 'empty'}). "
            "Nothing was extracted. Add the region to ALLOWED_REGIONS (or the asset config allowed_regions) "
            "only if its data may be archived to this lake."
        )


def average_record_bytes(manifests: Iterable[Mapping[str, Any]]) -> float | None:
    """Stored bytes per record over the given manifests (None when they hold no records)."""
    records = total = 0
    for manifest in manifests:
        records += int(manifest.get("records") or 0)
        total += int(manifest.get("bytes") or 0)
    return total / records if records else None


def check_quota(total_hits: int, bytes_per_record: float, quota_mb: float, measured: bool = True) -> float:
    """Refuse when the estimate exceeds the quota; returns the estimate in MiB. ``measured`` says whether
    ``bytes_per_record`` came from earlier days' manifests or is the default used before there are any."""
    basis = "measured average of earlier days" if measured else "default estimate"
    estimate_mb = total_hits * bytes_per_record / MIB
    if estimate_mb > quota_mb:
        raise ArchivePolicyError(
            f"Storage quota: the day's {total_hits:,} web messaging conversations x {bytes_per_record:,.0f} bytes "
            f"({basis}) = {estimate_mb:,.2f} MB exceeds ARCHIVE_QUOTA_MB={quota_mb:g}. Nothing was "
            "extracted. Raise ARCHIVE_QUOTA_MB (or the asset config archive_quota_mb) or free storage."
        )
    return estimate_mb
