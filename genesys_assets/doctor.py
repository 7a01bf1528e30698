"""``genesys-assets doctor``: is everything the assets need reachable and permitted, and if not, what to do.

Each check talks to the real system the resources point at (live, or the sandbox) with the least intrusive
request that proves the point: a one-row page, a 404 on an id that cannot exist, a probe object that is
deleted again. Permissions are probed per asset, so a missing one is named with the assets that need it.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import dagster as dg

from genesys_assets.lib.legacy_interactions import PHONE_COLUMNS_ENV, phone_custom_columns
from genesys_assets.lib.recordings_staging import stated_source_audio
from genesys_assets.resources.genesys_cloud import (
    GenesysApiError,
    GenesysCloudResource,
    GenesysError,
    GenesysPermissionError,
    GenesysRetriesExhausted,
)
from genesys_assets.resources.pureconnect import INTERACTION_CUSTOM_ATTRIBUTES_SCHEMA


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class PermissionProbe:
    """One request that succeeds only with ``permission``; ``assets`` are the ones that need it."""

    permission: str
    assets: tuple[str, ...]
    method: str
    path: str
    json: Any = None
    params: dict[str, Any] | None = None
    # The probe is refused (400/404) once past the permission check: that proves access without side effects.
    refusal_proves_access: bool = False


def _yesterday_interval() -> str:
    day = datetime.now(UTC).date() - timedelta(days=1)
    return f"{day.isoformat()}T00:00:00.000Z/{(day + timedelta(days=1)).isoformat()}T00:00:00.000Z"


def permission_probes() -> list[PermissionProbe]:
    return [
        PermissionProbe("routing:wrapupCode:view", ("wrapup_codes", "id_maps"), "GET", "/api/v2/routing/wrapupcodes",
                        params={"pageSize": 1}),
        PermissionProbe("routing:queue:view", ("id_maps",), "GET", "/api/v2/routing/queues", params={"pageSize": 1}),
        PermissionProbe("analytics:conversationDetail:view", ("conversation_details", "webchat_archive"),
                        "POST", "/api/v2/analytics/conversations/details/query",
                        json={"interval": _yesterday_interval(), "paging": {"pageSize": 1, "pageNumber": 1}}),
        PermissionProbe("analytics:conversationAggregate:view", ("wrapup_facts checks",), "POST",
                        "/api/v2/analytics/conversations/aggregates/query",
                        json={"interval": _yesterday_interval(), "groupBy": ["wrapUpCode"], "metrics": ["nConnected"]}),
        PermissionProbe("conversation:message:view", ("webchat_archive",), "GET",
                        f"/api/v2/conversations/messages/{uuid.UUID(int=0)}", refusal_proves_access=True),
        PermissionProbe("migration:interaction:view", ("cloud_interactions",), "GET", "/api/v2/interactions",
                        params={"pageSize": 1}),
        PermissionProbe("migration:interaction:add", ("cloud_interactions",), "POST", "/api/v2/interactions",
                        json={"interactions": []}, refusal_proves_access=True),
    ]


_NETWORK_FIX = "check GENESYS_REGION / GENESYS_API_BASE_URL and the network path to the API host"


def _genesys_checks(genesys: GenesysCloudResource) -> list[Check]:
    try:
        client = genesys.get_client()
        client.get_json("/api/v2/users", params={"pageSize": 1})
    except GenesysError as error:
        unreachable = isinstance(error, GenesysRetriesExhausted) and error.status is None  # never answered
        return [Check("Genesys Cloud login", False, str(error), _NETWORK_FIX if unreachable else
                      "check GENESYS_CLIENT_ID / GENESYS_CLIENT_SECRET (a Client Credentials OAuth client) and "
                      "GENESYS_REGION or GENESYS_API_BASE_URL")]
    except Exception as error:  # TLS and other transport failures
        return [Check("Genesys Cloud login", False, f"{type(error).__name__}: {error}", _NETWORK_FIX)]
    checks = [Check("Genesys Cloud login", True, f"token obtained from {genesys.hosts().login_base_url}")]
    for probe in permission_probes():
        name = f"permission {probe.permission}"
        try:
            client.request(probe.method, probe.path, json=probe.json, params=probe.params)
            checks.append(Check(name, True, f"needed by {', '.join(probe.assets)}"))
        except GenesysPermissionError as error:
            checks.append(Check(name, False, f"missing; {', '.join(probe.assets)} cannot run",
                                f"add {probe.permission} to a role granted to the OAuth client ({error.code})"))
        except GenesysApiError as error:
            refused = error.status in (400, 404) and probe.refusal_proves_access
            checks.append(Check(name, refused, f"needed by {', '.join(probe.assets)}" if refused else str(error),
                                "" if refused else "see the message; the API refused the probe"))
    try:
        settings = client.get_json("/api/v2/interactions/settings")
        allowed = bool(settings.get("allowHistoricalImport"))
        checks.append(Check("historical import allowed", allowed, "migration target accepts past timestamps"
                            if allowed else "the migration target will answer 403 to cloud_interactions",
                            "" if allowed else "enable allowHistoricalImport on the migration target "
                            "(PUT /api/v2/interactions/settings)"))
    except GenesysError as error:
        checks.append(Check("historical import allowed", False, str(error),
                            "grant migration:settings:view to read the setting"))
    return checks


def _not_checked(name: str, resource: str) -> Check:
    return Check(name, False, f"not checked: the {resource} resource could not be set up (see above)")


def _probe(name: str, fix: str, probe: Callable[[], str]) -> Check:
    try:
        return Check(name, True, probe())
    except Exception as error:
        return Check(name, False, f"{type(error).__name__}: {error}", fix)


def run_checks(resources: dict[str, Any], staging_bucket: str | None) -> list[Check]:
    """Every check against the given resources (as ``initialized`` yields them); a check whose resource could
    not be set up is reported as not checked."""
    if "genesys" in resources:
        checks = _genesys_checks(resources["genesys"])
    else:
        checks = [_not_checked("Genesys Cloud login", "genesys")]

    def _guarded(name: str, fix: str, probe: Callable[[], str], needs: str) -> Check:
        return _probe(name, fix, probe) if needs in resources else _not_checked(name, needs)

    def pureconnect() -> str:
        answer = resources["pureconnect"].ping()
        return f"{answer['backend']} answered in {answer['latency_ms']} ms"

    checks.append(_guarded("PureConnect database", "check PURECONNECT_URI (see the README for the URI forms) and "
                           "that this host can reach the database", pureconnect, "pureconnect"))

    def lake() -> str:
        probe = f"_doctor/{uuid.uuid4().hex}.probe"
        resources["lake"].write_bytes(probe, b"ok")
        resources["lake"].delete(probe)
        return f"wrote and deleted a probe file in {resources['lake'].uri()}"

    checks.append(_guarded("lake writable", "check GENESYS_LAKE_URI and its credentials (AWS_* for s3://)", lake,
                           "lake"))

    def bucket() -> str:
        if not staging_bucket:
            raise ValueError("GENESYS_STAGING_BUCKET is not set")
        s3 = resources["recordings_s3"].get_client()
        key = f"_doctor/{uuid.uuid4().hex}.probe"
        s3.put_object(Bucket=staging_bucket, Key=key, Body=b"ok", ServerSideEncryption="AES256")
        s3.delete_object(Bucket=staging_bucket, Key=key)
        return f"wrote (SSE) and deleted a probe object in s3://{staging_bucket}"

    checks.append(_guarded("recording staging bucket", "set GENESYS_STAGING_BUCKET to a bucket these AWS "
                           "credentials may PutObject/DeleteObject in (GENESYS_S3_ENDPOINT_URL for non-AWS)", bucket,
                           "recordings_s3"))

    def source_audio() -> str:
        audio = stated_source_audio(os.environ.get("PURECONNECT_RECORDING_AUDIO"))
        return f"{audio}: staged recordings are tagged source-audio={audio}"

    checks.append(_probe("recording source audio", "ask your security team whether PureConnect's recording files "
                         "keep what its UI masks, then set PURECONNECT_RECORDING_AUDIO to raw or masked",
                         source_audio))

    def phone_columns() -> str:
        named = phone_custom_columns(os.environ.get(PHONE_COLUMNS_ENV),
                                     INTERACTION_CUSTOM_ATTRIBUTES_SCHEMA)
        if not named:
            return "none named: in custom attributes only values written as numbers (tel:, sip:, +) are hashed"
        return f"every value of {', '.join(named)} is hashed"

    checks.append(_probe("custom attribute phone columns", "name InteractionCustomAttributes columns in "
                         f"{PHONE_COLUMNS_ENV}, comma-separated (e.g. CustomString2,CustomNum1)",
                         phone_columns))

    def warehouse() -> str:
        with resources["warehouse"].get_connection() as connection:
            connection.execute("SELECT 1").fetchall()
        return f"opened {resources['warehouse'].database}"

    checks.append(_guarded("warehouse", "another process holds the DuckDB file for writing: stop it, or wait",
                           warehouse, "warehouse"))

    def pii() -> str:
        resources["pii"].hasher()
        return "customer numbers will be hashed"

    checks.append(_guarded("PII hash key", "set GENESYS_PII_HASH_KEY", pii, "pii"))
    return checks


def print_report(checks: list[Check], out: TextIO) -> None:
    width = max(len(c.name) for c in checks)
    for check in checks:
        print(f"{'ok  ' if check.ok else 'FAIL'}  {check.name:<{width}}  {check.detail}", file=out)
        if not check.ok and check.fix:
            print(f"      {'':<{width}}  fix: {check.fix}", file=out)
    failed = sum(not c.ok for c in checks)
    print(f"\n{len(checks) - failed} of {len(checks)} checks passed.", file=out)


_UNSET_ENV = re.compile(r'environment variable "([^"]+)" which is not set')


def _setup_problem(key: str, error: Exception) -> Check:
    """A failed check for a resource that could not be set up, naming the setting (never a value)."""
    unset = _UNSET_ENV.search(str(error))
    if unset:
        return Check(f"{key} configuration", False, f"{unset.group(1)} is not set",
                     f"set {unset.group(1)} (the README's Live configuration lists every setting)")
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return Check(f"{key} configuration", False, f"{type(error).__name__}: {first_line}",
                 "see the message; the README's Live configuration lists every setting")


@contextmanager
def initialized(resources: dict[str, dg.ConfigurableResource]) -> Iterator[tuple[dict[str, Any], list[Check]]]:
    """The resources with their EnvVars read and set up, as Dagster does at run start (torn down after), and a
    failed check for each one that could not be, so one bad setting does not hide the rest of the report."""
    with ExitStack() as stack:
        ready: dict[str, Any] = {}
        problems: list[Check] = []
        for key, resource in resources.items():
            try:
                ready[key] = stack.enter_context(resource.process_config_and_initialize_cm())
            except Exception as error:
                problems.append(_setup_problem(key, error))
        yield ready, problems
