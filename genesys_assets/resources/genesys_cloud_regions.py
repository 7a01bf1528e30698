"""Genesys Cloud regions and the API/login hosts they live on.

Genesys Cloud serves each region from its own domain: the Platform API at ``https://api.<domain>`` and the
OAuth server at ``https://login.<domain>``. A token from one region is useless in another, so the region
(or explicit base URLs, e.g. the sandbox emulator) is the first thing the resource resolves.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

#: AWS-style region name → Genesys Cloud domain (the 17 public regions of the official SDKs).
REGION_DOMAINS: dict[str, str] = {
    "us_east_1": "mypurecloud.com",
    "eu_west_1": "mypurecloud.ie",
    "ap_southeast_2": "mypurecloud.com.au",
    "ap_northeast_1": "mypurecloud.jp",
    "eu_central_1": "mypurecloud.de",
    "us_west_2": "usw2.pure.cloud",
    "ca_central_1": "cac1.pure.cloud",
    "ap_northeast_2": "apne2.pure.cloud",
    "eu_west_2": "euw2.pure.cloud",
    "ap_south_1": "aps1.pure.cloud",
    "us_east_2": "use2.us-gov-pure.cloud",
    "sa_east_1": "sae1.pure.cloud",
    "me_central_1": "mec1.pure.cloud",
    "ap_northeast_3": "apne3.pure.cloud",
    "eu_central_2": "euc2.pure.cloud",
    "mx_central_1": "mxc1.pure.cloud",
    "ap_southeast_1": "apse1.pure.cloud",
}


class UnknownRegionError(ValueError):
    """A region name that is not one of Genesys Cloud's regions (the message lists the valid ones)."""


class RegionConflictError(ValueError):
    """The configured region and the explicit base URL name two different Genesys Cloud regions."""


@dataclass(frozen=True)
class GenesysHosts:
    """Where to send API calls and where to get tokens."""

    api_base_url: str
    login_base_url: str


def normalise_region(region: str) -> str:
    """Accept ``us-east-1``, ``US_EAST_1`` or a region's domain (``mypurecloud.ie``) as well as ``us_east_1``."""
    name = region.strip().lower().replace("-", "_")
    if name in REGION_DOMAINS:
        return name
    domain = region.strip().lower().removeprefix("https://").removeprefix("api.").removeprefix("login.")
    domain = domain.rstrip("/")
    for key, value in REGION_DOMAINS.items():
        if value == domain:
            return key
    valid = ", ".join(sorted(REGION_DOMAINS))
    raise UnknownRegionError(f"Unknown Genesys Cloud region {region!r}. Valid regions: {valid}.")


def region_hosts(region: str) -> GenesysHosts:
    """The API and login base URLs of a region."""
    domain = REGION_DOMAINS[normalise_region(region)]
    return GenesysHosts(api_base_url=f"https://api.{domain}", login_base_url=f"https://login.{domain}")


def region_of_host(url: str) -> str | None:
    """The region whose API or login host ``url`` is on; None for any other host (the emulator, a proxy)."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")  # "api.mypurecloud.ie." is the same host
    for region, domain in REGION_DOMAINS.items():
        if host in (f"api.{domain}", f"login.{domain}"):
            return region
    return None


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL (the emulator serves /oauth/token on the API origin)."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"Not an absolute http(s) URL: {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def resolve_hosts(
    region: str | None, api_base_url: str | None = None, login_base_url: str | None = None
) -> GenesysHosts:
    """Explicit base URLs win; otherwise the region's hosts.

    Without an explicit login URL, a region's API host logs in at that region's login host, and any other API
    host at its own origin: the sandbox emulator answers /oauth/token on the same origin as /api/v2.
    """
    if api_base_url:
        api = api_base_url.rstrip("/")
        origin(api)  # validates
        if login_base_url:
            login = login_base_url.rstrip("/")
            origin(login)
        else:
            host_region = region_of_host(api)
            login = region_hosts(host_region).login_base_url if host_region else origin(api)
        _check_same_region(region, api, login)
        return GenesysHosts(api_base_url=api, login_base_url=login)
    if not region:
        valid = ", ".join(sorted(REGION_DOMAINS))
        raise UnknownRegionError(
            f"Set either a Genesys Cloud region (GENESYS_REGION; one of {valid}) or an explicit api_base_url."
        )
    by_region = region_hosts(region)
    login = by_region.login_base_url
    if login_base_url:
        login = login_base_url.rstrip("/")
        origin(login)
        _check_same_region(region, by_region.api_base_url, login)
    return GenesysHosts(api_base_url=by_region.api_base_url, login_base_url=login)


def _check_same_region(region: str | None, *urls: str) -> None:
    """Refuse hosts of two regions, or a region named beside another region's host: residency depends on it.

    A region named beside a host that is no region's (the emulator, a proxy) is kept as that host's label.
    """
    named = {url: found for url in urls if (found := region_of_host(url))}
    wanted = {normalise_region(region)} if region and named else set()
    if len(set(named.values()) | wanted) > 1:
        hosts = ", ".join(f"{urlsplit(url).hostname} is {found}" for url, found in named.items())
        raise RegionConflictError(
            f"The Genesys Cloud settings name different regions: GENESYS_REGION={region!r}; {hosts}. "
            "Set GENESYS_REGION to the region of the hosts, or leave the base URLs unset to use the region's own."
        )
