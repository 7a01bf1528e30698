"""A Genesys Cloud tenant on loopback: the real endpoints and shapes, deterministic data, injectable faults.

Any Genesys client (the project's resource, the official SDK) pointed at ``base_url`` authenticates with
client credentials at ``/oauth/token`` (same origin as ``/api/v2``) and talks to:

- directory: ``/api/v2/users`` (state filter), ``/api/v2/routing/queues``, ``/api/v2/routing/wrapupcodes``
  (today's names; renamed and deleted codes as the directory history says);
- analytics: details jobs (QUEUED -> PENDING -> terminal, cursor paging, DELETE, availability watermark),
  the sync details query (100-per-page, 100,000-result cap), the aggregates query;
- web messaging: ``/api/v2/conversations/messages/{id}`` and ``.../messages/bulk`` (<= 1,000 ids);
- ``/api/v2/uploads/recordings``: a short-lived HMAC-signed PUT URL on this server;
- the migration target of seeds 000/001 (see ``migration_target.py``: no public Genesys API exists for it);
- ``/__sandbox__/...``: admin (faults, fail-next, request log, clients) and the seed-002 data-lake webhook.

Responses follow the official SDK models (``PureCloudPlatformClientV2``); the contract tests walk every field.
Faults (429 with Retry-After, 5xx, dropped connections, token expiry, failing/expiring/stuck jobs, availability
lag, schema drift, latency) come from a ``FaultConfig`` at start, a per-request ``X-Sandbox-Fault`` header, or the
admin API, and touch only ``/api/v2/*`` and ``/oauth/token``. Secrets and tokens are never logged.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fnmatch
import hashlib
import hmac
import logging
import math
import random
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import orjson

from genesys_assets.sandbox import migration_target as mt
from genesys_assets.sandbox.conversations import ConversationStore, iso_ms, web_messages
from genesys_assets.sandbox.directory import DEFAULT_SEED, build_directory, stable_id
from genesys_assets.sandbox.genesys_emulator_analytics import (
    JOB_DEFAULT_PAGE_SIZE,
    JOB_MAX_PAGE_SIZE,
    Analytics,
    JobBook,
    QueryError,
    decode_cursor,
    encode_cursor,
    parse_interval,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 512_000

# Permissions per endpoint: a client needs ANY one of them. /api/v2/users needs none, as in Genesys Cloud.
PERM_DETAILS = ("analytics:conversationDetail:view",)
# An existing job's status, results and DELETE also take the agent-scoped permission (the SDK's API docs).
PERM_DETAILS_JOB = (*PERM_DETAILS, "analytics:agentConversationDetail:view")
PERM_AGGREGATES = ("analytics:conversationAggregate:view",)
PERM_QUEUES = ("routing:queue:view",)
PERM_WRAPUPS = ("routing:wrapupCode:view",)
PERM_MESSAGES = ("conversation:message:view", "conversation:webmessaging:view")
PERM_UPLOADS = ("recording:recording:upload",)
ALL_PERMISSIONS = ("*",)


@dataclass
class FaultConfig:
    """Fault knobs; the same field names are the keys of ``X-Sandbox-Fault`` and ``PUT /__sandbox__/faults``."""

    rate_429: float = 0.0
    retry_after: str = "1"           # Retry-After sent with 429s: seconds, "lo-hi" (random whole seconds), a date, junk
    rate_5xx: float = 0.0
    rate_drop: float = 0.0           # connection closed mid-body
    token_ttl_seconds: int = 86400   # expires_in of new tokens; expired tokens get 401
    job_outcome: str = "FULFILLED"   # FULFILLED | FAILED | EXPIRED | STUCK (stays PENDING forever)
    job_delay_seconds: float = 0.5   # QUEUED -> PENDING -> terminal
    availability_lag_seconds: float = 6 * 3600
    schema_drift: bool = False       # unknown keys added, optional keys missing, attribute value types changed
    latency_seconds: float = 0.0

    def merged(self, changes: dict[str, object]) -> FaultConfig:
        """A copy with ``changes`` applied, each value coerced to the field's type."""
        types = {f.name: f.type for f in dataclasses.fields(self)}
        coerced: dict[str, object] = {}
        for key, value in changes.items():
            if key not in types:
                raise ValueError(f"unknown fault {key!r}; known: {', '.join(types)}")
            kind = types[key]
            if kind == "bool":
                coerced[key] = value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true",
                                                                                                  "yes", "on")
            elif kind == "int":
                coerced[key] = int(float(value))  # type: ignore[arg-type]
            elif kind == "float":
                coerced[key] = float(value)  # type: ignore[arg-type]
            else:
                coerced[key] = str(value)
        return dataclasses.replace(self, **coerced)  # type: ignore[arg-type]

    @staticmethod
    def parse_header(value: str) -> dict[str, str]:
        """``rate_429=0.5;retry_after=2`` -> {"rate_429": "0.5", "retry_after": "2"}."""
        out: dict[str, str] = {}
        for part in value.split(";"):
            if part.strip():
                key, _, val = part.partition("=")
                out[key.strip()] = val.strip()
        return out


# GenesysCloudResource settings for a client of this emulator (definitions.py in sandbox mode, the API benchmark):
# no rate limit of the emulator's own to respect, and no job finishes before ``job_delay_seconds``, so the first
# status poll waits that long (the live default, 10 s doubling to 120 s, fits the real service's jobs).
CLIENT_TUNING: dict[str, float] = {"requests_per_second": 0.0,
                                   "job_poll_initial_seconds": FaultConfig.job_delay_seconds,
                                   "job_poll_max_seconds": 2.0}


@dataclass
class _Token:
    client_id: str
    permissions: tuple[str, ...]
    expires_at: float


class _Drop(Exception):
    """Close the connection without (or in the middle of) an answer."""


class _Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}


def _json(status: int, obj: object, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, orjson.dumps(obj), {"Content-Type": "application/json", **(headers or {})})


def error_body(status: int, code: str, message: str, params: dict[str, str] | None = None,
               with_params: str | None = None) -> dict:
    """The platform's ErrorBody."""
    body: dict = {"message": message, "code": code, "status": status}
    if params:
        body["messageWithParams"] = with_params or message
        body["messageParams"] = params
    body["contextId"] = str(uuid.uuid4())
    body["details"] = []
    body["errors"] = []
    return body


def _err(status: int, code: str, message: str, headers: dict[str, str] | None = None, **kw: object) -> _Response:
    """An ErrorBody answer; its ``contextId`` is the answer's ``inin-correlation-id``, as on the real platform."""
    body = error_body(status, code, message, **kw)  # type: ignore[arg-type]
    return _json(status, body, {"inin-correlation-id": body["contextId"], **(headers or {})})


_NOT_FOUND = ("not.found", "The requested resource was not found.")
_STANDARD_5XX = {
    500: ("internal.server.error", "The server encountered an unexpected condition which prevented it from "
                                   "fulfilling the request."),
    502: ("bad.gateway", "Bad Gateway"),
    503: ("service.unavailable", "Service Unavailable - The server is currently unavailable (because it is "
                                 "overloaded or down for maintenance)."),
    504: ("request.timeout", "The request timed out."),
}


class _Request:
    """What a route handler sees."""

    def __init__(self, method: str, path: str, query: dict[str, list[str]], headers, body: bytes,  # type: ignore[no-untyped-def]
                 faults: FaultConfig) -> None:
        self.method, self.path, self.query, self.headers, self.body, self.faults = (method, path, query, headers,
                                                                                    body, faults)
        self.token: _Token | None = None
        self.match: re.Match | None = None

    def arg(self, name: str, default: str | None = None) -> str | None:
        vals = self.query.get(name)
        return vals[0] if vals else default

    def int_arg(self, name: str, default: int) -> int:
        raw = self.arg(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError as exc:
            raise QueryError(f"Value [{raw}] is not valid for field type [int] ({name})") from exc

    def json(self) -> object:
        if not self.body:
            raise QueryError("The request body is required")
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise QueryError("The request could not be understood by the server due to malformed syntax.") \
                from exc


Handler = Callable[[_Request], _Response]


class GenesysEmulator:
    """The emulated tenant. ``with GenesysEmulator(tmp) as gc: requests.post(gc.base_url + "/oauth/token", ...)``"""

    def __init__(self, state_dir: Path, *, seed: int = DEFAULT_SEED, conversations_per_day: int = 2000,
                 faults: FaultConfig | None = None, historical_import_enabled: bool = False,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the emulator binds loopback only")
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.seed = seed
        self.faults = faults or FaultConfig()
        self.directory = build_directory(seed)
        self.store = ConversationStore(self.state_dir, seed=seed, conversations_per_day=conversations_per_day)
        self.analytics = Analytics(self.store, self._now_ms)
        self.jobs = JobBook(self.analytics)
        self.target = mt.MigrationTarget(self.state_dir / "migration_target.sqlite3", historical_import_enabled)
        self.client_id = stable_id(seed, "oauth-client", "sandbox")
        self.client_secret = hashlib.sha256(f"genesys-sandbox-secret/{seed}".encode()).hexdigest()[:43]
        self._clients: dict[str, tuple[str, tuple[str, ...]]] = {self.client_id: (self.client_secret,
                                                                                    ALL_PERMISSIONS)}
        self._tokens: dict[str, _Token] = {}
        self._retired_tokens: list[str] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._fail_next: list[tuple[int, str | None]] = []
        self._next_job_outcomes: list[str] = []
        self._refused_records: set[str] = set()
        self._log: list[dict] = []
        self._request_hooks: list[Callable[[dict], object]] = []
        self._hook_errors: list[BaseException] = []
        self._webhooks: list[dict] = []
        self._upload_secret = hashlib.sha256(f"upload-signing/{seed}".encode()).digest()
        self._host, self._port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self.base_url = ""
        self._routes: list[tuple[str, re.Pattern, Handler, tuple[str, ...] | None]] = []
        self._register_routes()

    # ----------------------------------------------------------------------------------------- lifecycle

    def start(self) -> GenesysEmulator:
        """Bind and serve on a daemon thread; ``base_url`` is set once this returns."""
        emulator = self

        class _Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        class _Bound(_HTTPHandler):
            pass

        _Bound.emulator = emulator
        self._server = _Server((self._host, self._port), _Bound)
        host, port = self._server.server_address[:2]
        self.base_url = f"http://{'127.0.0.1' if host == '127.0.0.1' else host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True, name="genesys-emulator")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and every open keep-alive connection."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            with self._lock:
                conns = list(self._connections)
            for conn in conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.store.close()
        self.target.close()

    def __enter__(self) -> GenesysEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------------------------------- admin API

    def set_faults(self, **changes: object) -> None:
        """Merge fault knobs into the running configuration."""
        with self._lock:
            self.faults = self.faults.merged(changes)

    def fail_next(self, status: int, count: int = 1, retry_after: str | None = None) -> None:
        """The next ``count`` /api/v2 or /oauth requests answer ``status`` (0 drops the connection)."""
        if status not in (0, 429) and not 500 <= status <= 599:
            raise ValueError("status must be 0 (drop), 429 or 5xx")
        with self._lock:
            self._fail_next.extend([(status, retry_after)] * count)

    def fail_next_jobs(self, outcome: str, count: int = 1) -> None:
        """The next ``count`` details jobs submitted end ``outcome`` (FAILED | EXPIRED | STUCK), whatever the faults."""
        if outcome not in ("FAILED", "EXPIRED", "STUCK", "FULFILLED"):
            raise ValueError("outcome must be FAILED, EXPIRED, STUCK or FULFILLED")
        with self._lock:
            self._next_job_outcomes.extend([outcome] * count)

    def clear_faults(self) -> None:
        """Forget planned faults: fail-next answers, planned job outcomes, refused records."""
        with self._lock:
            self._fail_next.clear()
            self._next_job_outcomes.clear()
            self._refused_records = set()

    def refuse_records(self, ids: set[str] | list[str]) -> None:
        """The migration target answers 400 for any batch holding one of ``ids`` (a target-side refusal of one
        record; not remembered under the X-Request-ID, so the batch goes through once the refusal is lifted)."""
        with self._lock:
            self._refused_records = set(ids)

    def issued_tokens(self) -> list[str]:
        """Every access token this tenant has issued and still remembers (for secret scans in tests)."""
        with self._lock:
            return list(self._tokens) + list(self._retired_tokens)

    def revoke_tokens(self) -> None:
        """Revoke every access token server-side (as an admin or clock skew would), so a client still trusting its
        token meets a 401 on its next request; ``issued_tokens`` keeps them for secret scans."""
        with self._lock:
            self._retire(list(self._tokens))

    def _retire(self, tokens: list[str]) -> None:
        """(holding the lock) Tokens no longer accepted, kept listed for ``issued_tokens`` (bounded: only tests
        read it)."""
        for token in tokens:
            del self._tokens[token]
        self._retired_tokens.extend(tokens)
        del self._retired_tokens[:-10_000]

    def add_client(self, client_id: str, client_secret: str, permissions: list[str]) -> None:
        """Register an OAuth client whose tokens carry exactly ``permissions`` (``*`` wildcards allowed)."""
        with self._lock:
            self._clients[client_id] = (client_secret, tuple(permissions))

    def request_log(self) -> list[dict]:
        with self._lock:
            return list(self._log)

    def clear_request_log(self) -> None:
        with self._lock:
            self._log.clear()

    @contextlib.contextmanager
    def request_hook(self, hook: Callable[[dict], object]) -> Iterator[None]:
        """Within the block, ``hook(entry)`` runs for every logged request on the thread serving it, after it is
        logged and before its answer leaves: a test arms a fault at an exact point of a run, not after a race."""
        with self._lock:
            self._request_hooks.append(hook)
        try:
            yield
        finally:
            with self._lock:
                self._request_hooks.remove(hook)
                errors, self._hook_errors = self._hook_errors, []
        if errors:  # the request was still answered: a hook that failed must fail the test, not pass unseen
            raise errors[0]

    def webhook_deliveries(self) -> list[dict]:
        with self._lock:
            return list(self._webhooks)

    def conversations_for_day(self, day: date) -> list[dict]:
        """Every conversation that started on ``day`` (UTC), with attributes: the ground truth for tests."""
        return self.store.conversations_for_day(day)

    def uploads(self) -> list[dict]:
        """Files PUT to presigned upload URLs: uploadKey, size, md5 (base64), contentType."""
        root = self.state_dir / "uploads"
        out = []
        for meta in sorted(root.rglob("*.meta.json")) if root.exists() else []:
            out.append(orjson.loads(meta.read_bytes()))
        return out

    def _now_ms(self) -> int:
        return int(time.time() * 1000)

    # ----------------------------------------------------------------------------------------- dispatch

    def _register_routes(self) -> None:
        r = self._route
        r("POST", r"/oauth/token", self._oauth_token, None)
        r("GET", r"/api/v2/users", self._users, ())
        r("GET", r"/api/v2/routing/queues", self._queues, PERM_QUEUES)
        r("GET", r"/api/v2/routing/wrapupcodes", self._wrapups, PERM_WRAPUPS)
        base = r"/api/v2/analytics/conversations/details"
        r("GET", base + r"/jobs/availability", self._availability, PERM_DETAILS)
        r("POST", base + r"/jobs", self._job_submit, PERM_DETAILS)
        r("GET", base + r"/jobs/(?P<job>[^/]+)", self._job_status, PERM_DETAILS_JOB)
        r("DELETE", base + r"/jobs/(?P<job>[^/]+)", self._job_delete, PERM_DETAILS_JOB)
        r("GET", base + r"/jobs/(?P<job>[^/]+)/results", self._job_results, PERM_DETAILS_JOB)
        r("POST", base + r"/query", self._details_query, PERM_DETAILS)
        r("POST", r"/api/v2/analytics/conversations/aggregates/query", self._aggregates, PERM_AGGREGATES)
        r("GET", r"/api/v2/conversations/messages/(?P<cid>[^/]+)", self._message_conversation, PERM_MESSAGES)
        r("POST", r"/api/v2/conversations/messages/(?P<cid>[^/]+)/messages/bulk", self._messages_bulk,
          PERM_MESSAGES)
        r("POST", r"/api/v2/uploads/recordings", self._upload_url, PERM_UPLOADS)
        r("GET", r"/api/v2/interactions/settings", self._mt_settings_get, (mt.PERMISSION_SETTINGS_VIEW,
                                                                           mt.PERMISSION_SETTINGS_EDIT))
        r("PUT", r"/api/v2/interactions/settings", self._mt_settings_put, (mt.PERMISSION_SETTINGS_EDIT,))
        r("POST", r"/api/v2/interactions", self._mt_post, (mt.PERMISSION_ADD,))
        r("GET", r"/api/v2/interactions", self._mt_list, (mt.PERMISSION_VIEW,))
        r("GET", r"/api/v2/interactions/(?P<iid>[^/]+)", self._mt_get, (mt.PERMISSION_VIEW,))
        r("PUT", r"/uploads/recordings/(?P<key>.+)", self._upload_put, None)
        r("POST", r"/__sandbox__/webhooks/data-lake", self._webhook_receive, None)
        r("GET", r"/__sandbox__/webhooks", lambda q: _json(200, {"deliveries": self.webhook_deliveries()}), None)
        r("GET", r"/__sandbox__/faults", lambda q: _json(200, dataclasses.asdict(self.faults)), None)
        r("PUT", r"/__sandbox__/faults", self._admin_faults, None)
        r("POST", r"/__sandbox__/fail-next", self._admin_fail_next, None)
        r("GET", r"/__sandbox__/requests", lambda q: _json(200, {"requests": self.request_log()}), None)
        r("DELETE", r"/__sandbox__/requests", self._admin_clear_log, None)
        r("POST", r"/__sandbox__/clients", self._admin_clients, None)

    def _route(self, method: str, pattern: str, handler: Handler, perms: tuple[str, ...] | None) -> None:
        self._routes.append((method, re.compile(pattern + r"/?$"), handler, perms))

    def handle(self, h: _HTTPHandler) -> None:
        """Serve one request on handler ``h`` (called from the server's worker threads)."""
        t0 = time.time()
        split = urlsplit(h.path)
        path = unquote(split.path)
        query = parse_qs(split.query, keep_blank_values=True)
        faultable = path.startswith("/api/v2/") or path == "/oauth/token"
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        logged = not path.startswith("/__sandbox__/")

        def record(status: int, fault: str | None) -> None:
            # Logged before the answer leaves: a client that has its answer always finds the request in the log.
            if logged:
                entry = {"method": h.command, "path": path, "status": status, "time": t0,
                         "duration_ms": round((time.time() - t0) * 1000, 3), "fault": fault}
                with self._lock:
                    self._log.append(entry)
                    hooks = list(self._request_hooks)
                for hook in hooks:
                    try:
                        hook(entry)
                    except Exception as error:  # raised again where the hook was armed
                        with self._lock:
                            self._hook_errors.append(error)

        def send(resp: _Response, fault: str | None = None, truncate: bool = False) -> None:
            record(resp.status, fault)
            self._send(h, resp, truncate=truncate)

        try:
            faults = self.faults
            header = h.headers.get("X-Sandbox-Fault")
            if header and faultable:
                try:
                    faults = faults.merged(FaultConfig.parse_header(header))
                except ValueError as exc:
                    send(_err(400, "bad.request", f"X-Sandbox-Fault: {exc}"))
                    return
            if faultable:
                injected = self._inject(faults)
                if injected is not None:
                    if injected.status == 0:
                        record(0, "drop")
                        raise _Drop
                    send(injected, fault=str(injected.status))
                    return
                if faults.latency_seconds > 0:
                    time.sleep(faults.latency_seconds)
                if length > MAX_BODY_BYTES:
                    send(_err(413, "request.entity.too.large", f"The request body exceeds {MAX_BODY_BYTES} bytes"))
                    return
            resp = self._dispatch(h.command, path, query, h.headers, body, faults)
            if faultable and faults.rate_drop > 0 and self._chance(faults.rate_drop):
                send(resp, fault="drop-mid-body", truncate=True)
                raise _Drop
            send(resp)
        except _Drop:
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)

    def _chance(self, rate: float) -> bool:
        with self._lock:
            return self._rng.random() < rate

    def _inject(self, faults: FaultConfig) -> _Response | None:
        with self._lock:
            planned = self._fail_next.pop(0) if self._fail_next else None
        if planned is not None:
            status, retry_after = planned
            if status == 0:
                return _Response(0)
            return self._fault_response(status, retry_after or faults.retry_after)
        if faults.rate_429 > 0 and self._chance(faults.rate_429):
            return self._fault_response(429, faults.retry_after)
        if faults.rate_5xx > 0 and self._chance(faults.rate_5xx):
            with self._lock:
                status = self._rng.choice((500, 502, 503))
            return self._fault_response(status, None)
        if faults.rate_drop > 0 and self._chance(faults.rate_drop / 2):
            return _Response(0)
        return None

    def _fault_response(self, status: int, retry_after: str | None) -> _Response:
        if status == 429:  # the normalised 429 of every Platform API resource since 10 Nov 2021 (API-5464)
            wait = _retry_after_value(retry_after)
            return _err(429, "too.many.requests.retry.after",
                        f"Rate limit exceeded the maximum. Retry the request in [{wait}] seconds",
                        headers={"Retry-After": wait})
        code, message = _STANDARD_5XX.get(status, ("internal.server.error", "Server error"))
        return _err(status, code, message)

    def _dispatch(self, method: str, path: str, query: dict, headers, body: bytes,  # type: ignore[no-untyped-def]
                  faults: FaultConfig) -> _Response:
        path_matched = False
        for m, pattern, handler, perms in self._routes:
            match = pattern.match(path)
            if not match:
                continue
            path_matched = True
            if m != method:
                continue
            req = _Request(method, path, query, headers, body, faults)
            req.match = match
            if perms is not None:
                denied = self._authorize(req, perms)
                if denied is not None:
                    return denied
            try:
                return handler(req)
            except QueryError as exc:
                return _err(400, "bad.request", str(exc))
            except Exception:
                log.exception("emulator handler failed: %s %s", method, path)
                return _err(500, *_STANDARD_5XX[500])
        if path_matched:
            return _err(405, "method.not.allowed", f"Method {method} is not allowed on {path}")
        return _err(404, *_NOT_FOUND)

    def _authorize(self, req: _Request, perms: tuple[str, ...]) -> _Response | None:
        auth = req.headers.get("Authorization") or ""
        if not auth.lower().startswith("bearer "):
            return _err(401, "authentication.required",
                        "No authentication bearer token specified in authorization header.")
        with self._lock:
            token = self._tokens.get(auth[7:].strip())
        if token is None or token.expires_at <= time.time():
            return _err(401, "bad.credentials", "Invalid login credentials.")
        req.token = token
        if perms and not any(fnmatch.fnmatchcase(need, have) for need in perms for have in token.permissions):
            listed = "[" + ", ".join(perms) + "]"
            msg = ("Unable to perform the requested action. You must have at least one of the following "
                   f"permissions assigned: {listed}")
            return _err(403, "missing.any.permissions", msg, params={"permissions": listed},
                        with_params="Unable to perform the requested action. You must have at least one of the "
                                    "following permissions assigned: {permissions}")
        return None

    def _send(self, h: _HTTPHandler, resp: _Response, truncate: bool = False) -> int:
        h.send_response(resp.status)
        for k, v in resp.headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(resp.body)))
        if resp.status >= 200 and "inin-correlation-id" not in resp.headers:
            h.send_header("inin-correlation-id", str(uuid.uuid4()))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(resp.body[: len(resp.body) // 2] if truncate else resp.body)
        h.wfile.flush()
        return resp.status

    # ----------------------------------------------------------------------------------------- OAuth

    def _oauth_token(self, req: _Request) -> _Response:
        def oauth_error(status: int, error: str, description: str) -> _Response:
            return _json(status, {"error": error, "description": description, "error_description": description})

        auth = req.headers.get("Authorization") or ""
        form = parse_qs(req.body.decode("utf-8", "replace"))
        client_id = secret = None
        if auth.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return oauth_error(400, "invalid_request", "malformed basic authorization header")
        elif "client_id" in form:
            client_id, secret = form["client_id"][0], (form.get("client_secret") or [""])[0]
        grant = (form.get("grant_type") or [""])[0]
        if grant != "client_credentials":
            return oauth_error(400, "unsupported_grant_type", f"grant type '{grant}' is not supported")
        with self._lock:
            known = self._clients.get(client_id or "")
        if known is None:
            return oauth_error(400, "invalid_client", "client not found")
        if not hmac.compare_digest(known[0], secret or ""):
            return oauth_error(401, "invalid_client", "authentication failed")
        ttl = max(1, int(req.faults.token_ttl_seconds))
        token = secrets.token_urlsafe(48)
        with self._lock:
            now = time.time()
            self._retire([k for k, t in self._tokens.items() if t.expires_at <= now])
            self._tokens[token] = _Token(client_id or "", known[1], now + ttl)
        return _json(200, {"access_token": token, "token_type": "bearer", "expires_in": ttl})

    # ----------------------------------------------------------------------------------------- directory

    def _page(self, req: _Request, entities: list[dict], default_size: int = 25, max_size: int = 500) -> _Response:
        size = req.int_arg("pageSize", default_size)
        number = req.int_arg("pageNumber", 1)
        if size < 1 or number < 1:
            raise QueryError("pageSize and pageNumber must be positive")
        size = min(size, max_size)
        total = len(entities)
        pages = math.ceil(total / size) if total else 0
        extra = {k: v[0] for k, v in req.query.items() if k not in ("pageSize", "pageNumber")}

        def uri(n: int) -> str:
            return f"{req.path}?{urlencode({'pageSize': size, 'pageNumber': n, **extra}, quote_via=quote)}"

        body: dict = {"entities": entities[(number - 1) * size: number * size], "pageSize": size,
                      "pageNumber": number, "total": total, "firstUri": uri(1), "selfUri": uri(number)}
        if number < pages:
            body["nextUri"] = uri(number + 1)
        if number > 1:
            body["previousUri"] = uri(number - 1)
        body["lastUri"] = uri(max(pages, 1))
        body["pageCount"] = pages
        if req.faults.schema_drift:
            for e in body["entities"]:
                e["sandboxDriftField"] = {"addedBy": "schema_drift"}
        return _json(200, body)

    @staticmethod
    def _division(d) -> dict:  # type: ignore[no-untyped-def]
        return {"id": d.id, "name": d.name, "selfUri": f"/api/v2/authorization/divisions/{d.id}"}

    def _users(self, req: _Request) -> _Response:
        state = req.arg("state", "active")
        if state not in ("active", "inactive", "deleted", "any"):
            raise QueryError(f"Value [{state}] is not valid for field type [state]. Allowable values are: "
                             "active, inactive, deleted, any")
        users = [u for u in self.directory.users if state == "any" or u.state == state]
        users.sort(key=lambda u: (u.name.lower(), u.id))
        entities = [{"id": u.id, "name": u.name, "division": self._division(u.division), "email": u.email,
                     "state": u.state, "username": u.username, "version": 1, "acdAutoAnswer": False,
                     "selfUri": f"/api/v2/users/{u.id}"} for u in users]
        return self._page(req, entities)

    def _queues(self, req: _Request) -> _Response:
        name = req.arg("name")
        queues = sorted(self.directory.queues, key=lambda q: q.name.lower())
        if name:
            queues = [q for q in queues if fnmatch.fnmatchcase(q.name.lower(), name.lower())]
        created = "2024-01-01T00:00:00.000Z"
        entities = [{"id": q.id, "name": q.name, "division": self._division(q.division), "dateCreated": created,
                     "dateModified": created, "memberCount": q.member_count, "userMemberCount": q.member_count,
                     "joinedMemberCount": q.member_count, "scoringMethod": "TimestampAndPriority",
                     "skillEvaluationMethod": "ALL", "autoAnswerOnly": False, "enableTranscription": False,
                     "enableManualAssignment": False, "selfUri": f"/api/v2/routing/queues/{q.id}"}
                    for q in queues]
        return self._page(req, entities)

    def _wrapups(self, req: _Request) -> _Response:
        today = datetime.fromtimestamp(self._now_ms() / 1000, UTC).date()
        codes = self.directory.wrapup_codes_as_of(today)
        name = req.arg("name")
        rows = [(w, w.name_as_of(today)) for w in codes]
        if name:
            rows = [(w, n) for w, n in rows if fnmatch.fnmatchcase(n.lower(), name.lower())]
        rows.sort(key=lambda r: r[1].lower(), reverse=(req.arg("sortOrder") or "").lower() == "descending")
        entities = [{"id": w.id, "name": n, "division": self._division(w.division),
                     "dateCreated": f"{w.date_created.isoformat()}T00:00:00.000Z",
                     "dateModified": f"{w.date_modified(today).isoformat()}T00:00:00.000Z",
                     "selfUri": f"/api/v2/routing/wrapupcodes/{w.id}"} for w, n in rows]
        return self._page(req, entities, max_size=500)

    # ----------------------------------------------------------------------------------------- analytics

    def _watermark_ms(self, faults: FaultConfig) -> int:
        return self._now_ms() - int(faults.availability_lag_seconds * 1000)

    def _availability(self, req: _Request) -> _Response:
        return _json(200, {"dataAvailabilityDate": iso_ms(self._watermark_ms(req.faults))})

    def _job_submit(self, req: _Request) -> _Response:
        body = req.json()
        if not isinstance(body, dict):
            raise QueryError("The request body must be a JSON object")
        if "paging" in body:
            raise QueryError("paging is not supported by async jobs; page results with the cursor")
        with self._lock:
            outcome = self._next_job_outcomes.pop(0) if self._next_job_outcomes else req.faults.job_outcome
        job = self.jobs.submit(body, req.faults.job_delay_seconds, outcome, self._watermark_ms(req.faults))
        job.drift = req.faults.schema_drift
        return _json(202, {"jobId": job.id})

    def _job(self, req: _Request):  # type: ignore[no-untyped-def]
        return self.jobs.get(req.match["job"])  # type: ignore[index]

    def _job_status(self, req: _Request) -> _Response:
        job = self._job(req)
        if job is None:
            return _err(404, *_NOT_FOUND)
        return _json(200, job.status(self._now_ms()))

    def _job_delete(self, req: _Request) -> _Response:
        if not self.jobs.delete(req.match["job"], self._now_ms()):  # type: ignore[index]
            return _err(404, *_NOT_FOUND)
        return _Response(204)

    def _job_results(self, req: _Request) -> _Response:
        job = self._job(req)
        if job is None:
            return _err(404, *_NOT_FOUND)
        state = job.state(self._now_ms())
        if state != "FULFILLED":
            return _err(400, "bad.request", f"Results are not available: job {job.id} is {state}")
        size = req.int_arg("pageSize", JOB_DEFAULT_PAGE_SIZE)
        if not 1 <= size <= JOB_MAX_PAGE_SIZE:
            raise QueryError(f"pageSize must be between 1 and {JOB_MAX_PAGE_SIZE}")
        cursor = req.arg("cursor")
        offset = decode_cursor(cursor) if cursor else 0
        refs = job.refs or []
        page = refs[offset: offset + size]
        parts = [b'{"conversations":[']
        if job.drift:
            parts.append(b",".join(orjson.dumps(_drift(self.analytics.conversation(r))) for r in page))
        else:
            parts.append(b",".join(self.analytics.raw(r) for r in page))  # pre-serialised bytes, joined
        parts.append(b"]")
        if offset + size < len(refs):
            parts.append(b',"cursor":' + orjson.dumps(encode_cursor(offset + size)))
        parts.append(b',"dataAvailabilityDate":' + orjson.dumps(iso_ms(job.watermark_ms)) + b"}")
        return _Response(200, b"".join(parts), {"Content-Type": "application/json"})

    def _details_query(self, req: _Request) -> _Response:
        body = req.json()
        if not isinstance(body, dict):
            raise QueryError("The request body must be a JSON object")
        out = self.analytics.sync_page(body)
        if req.faults.schema_drift:
            out["conversations"] = [_drift(c) for c in out.get("conversations", [])]
        return _json(200, out)

    def _aggregates(self, req: _Request) -> _Response:
        body = req.json()
        if not isinstance(body, dict):
            raise QueryError("The request body must be a JSON object")
        return _json(200, self.analytics.aggregate(body))

    # ----------------------------------------------------------------------------------------- messaging

    def _message_conv(self, req: _Request) -> dict | None:
        conv = self.store.find(req.match["cid"])  # type: ignore[index]
        if conv is None:
            return None
        media = {s.get("mediaType") for p in conv["participants"] for s in p.get("sessions") or []}
        return conv if "message" in media else None

    def _message_conversation(self, req: _Request) -> _Response:
        conv = self._message_conv(req)
        if conv is None:
            return _err(404, *_NOT_FOUND)
        cid = conv["conversationId"]
        msgs = web_messages(conv)
        participants = []
        for p in conv["participants"]:
            if p["purpose"] not in ("customer", "agent", "acd"):
                continue
            session = p["sessions"][0]
            segs = session["segments"]
            entry: dict = {
                "id": p["participantId"], "name": p.get("participantName", ""),
                "startTime": segs[0]["segmentStart"], "endTime": segs[-1]["segmentEnd"],
                "purpose": p["purpose"], "state": "disconnected", "direction": session.get("direction", "inbound"),
                "held": False, "wrapupRequired": p["purpose"] == "agent", "type": "webmessaging",
                "provider": "PureCloud Messaging", "attributes": p.get("attributes") or {},
            }
            if p["purpose"] == "agent":
                entry["user"] = {"id": p["userId"], "selfUri": f"/api/v2/users/{p['userId']}"}
                entry["connectedTime"] = segs[0]["segmentEnd"] if len(segs) > 1 else segs[0]["segmentStart"]
            queue_id = next((s.get("queueId") for s in segs if s.get("queueId")), None)
            if queue_id:
                entry["queue"] = {"id": queue_id, "selfUri": f"/api/v2/routing/queues/{queue_id}"}
            if p["purpose"] == "customer":
                entry["fromAddress"] = {"addressNormalized": session.get("addressFrom", "")}
                entry["toAddress"] = {"addressNormalized": session.get("addressTo", "")}
            mine = [m for m in msgs if m["participantId"] == p["participantId"]]
            entry["messages"] = [{
                "messageId": m["messageId"], "messageURI": f"/api/v2/conversations/messages/{cid}/messages/"
                                                           f"{m['messageId']}",
                "messageStatus": "received" if m["direction"] == "inbound" else "delivery-success",
                "messageSegmentCount": 1, "messageTime": iso_ms(m["time_ms"]),
                **({"media": [{"url": m["media"]["url"], "mediaType": m["media"]["mediaType"],
                               "contentLengthBytes": m["media"]["contentLengthBytes"], "name": m["media"]["name"],
                               "id": m["media"]["id"]}]} if m["media"] else {}),
            } for m in mine]
            participants.append(entry)
        return _json(200, {"id": cid, "participants": participants, "otherMediaUris": [],
                           "selfUri": f"/api/v2/conversations/messages/{cid}"})

    def _messages_bulk(self, req: _Request) -> _Response:
        ids = req.json()
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise QueryError("The body must be a JSON array of message ids")
        if len(ids) > 1000:
            raise QueryError(f"A bulk request may name at most 1000 message ids, got {len(ids)}")
        conv = self._message_conv(req)
        if conv is None:
            return _err(404, *_NOT_FOUND)
        cid = conv["conversationId"]
        session = conv["participants"][0]["sessions"][0]
        customer_addr, deployment_addr = session.get("addressFrom", ""), session.get("addressTo", "")
        wanted = set(ids)
        entities = []
        for m in web_messages(conv):
            if m["messageId"] not in wanted:
                continue
            inbound = m["direction"] == "inbound"
            content = []
            if m["media"]:
                md = m["media"]
                content.append({"contentType": "Attachment", "attachment": {
                    "id": md["id"], "mediaType": "Image", "url": md["url"], "mime": md["mediaType"],
                    "filename": md["name"], "contentSizeBytes": md["contentLengthBytes"]}})
            when = iso_ms(m["time_ms"])
            normalized = {
                "id": m["messageId"],
                "channel": {"platform": "WebMessaging", "type": "Private", "messageId": m["messageId"],
                            "to": {"id": deployment_addr if inbound else customer_addr},
                            "from": {"id": customer_addr if inbound else deployment_addr,
                                     "idType": "Opaque"},
                            "time": when},
                "type": "Text", "text": m["text"], "status": "Delivered" if inbound else "Sent",
                "direction": "Inbound" if inbound else "Outbound",
                "originatingEntity": "Human",
            }
            if content:
                normalized["content"] = content
            entities.append({
                "id": m["messageId"], "timestamp": when,
                "fromAddress": customer_addr if inbound else deployment_addr,
                "toAddress": deployment_addr if inbound else customer_addr,
                "direction": m["direction"], "messengerType": "webmessaging",
                "status": "received" if inbound else "sent",
                "normalizedMessage": normalized, "conversationId": cid,
                "selfUri": f"/api/v2/conversations/messages/{cid}/messages/{m['messageId']}",
            })
        return _json(200, {"entities": entities})

    # ----------------------------------------------------------------------------------------- uploads

    def _sign(self, key: str, expires: int) -> str:
        return hmac.new(self._upload_secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def _upload_url(self, req: _Request) -> _Response:
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("fileName"), str) or not body["fileName"]:
            raise QueryError("fileName is required")
        timeout = body.get("signedUrlTimeoutSeconds", 600)  # the SDK's UploadUrlRequest: "defaults to 600 seconds"
        if not isinstance(timeout, int) or not 1 <= timeout <= 604800:
            raise QueryError("signedUrlTimeoutSeconds must be between 1 and 604800")
        sse = body.get("serverSideEncryption")
        if sse not in (None, "AES256"):
            raise QueryError("Value is not valid for field type [serverSideEncryption]. Allowable values are: "
                             "AES256")
        name = re.sub(r"[^A-Za-z0-9._-]", "_", body["fileName"])[:200]
        key = f"recordings/{uuid.uuid4()}/{name}"
        expires = int(time.time()) + timeout
        url = f"{self.base_url}/uploads/{key}?" + urlencode({"X-Expires": expires,
                                                             "X-Signature": self._sign(key, expires)})
        headers = {"Content-Type": body.get("contentType") or "application/octet-stream"}
        if body.get("contentMd5"):
            headers["Content-MD5"] = body["contentMd5"]
        if sse:
            headers["x-amz-server-side-encryption"] = sse
        return _json(200, {"url": url, "uploadKey": key, "headers": headers})

    def _upload_put(self, req: _Request) -> _Response:
        def s3_error(status: int, code: str, message: str) -> _Response:
            xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}'
                   f"</Message></Error>").encode()
            return _Response(status, xml, {"Content-Type": "application/xml"})

        key = "recordings/" + req.match["key"]  # type: ignore[index]
        try:
            expires = int(req.arg("X-Expires") or "0")
        except ValueError:
            expires = 0
        signature = req.arg("X-Signature") or ""
        if not hmac.compare_digest(self._sign(key, expires), signature):
            return s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match "
                                                          "the signature you provided.")
        if expires < time.time():
            return s3_error(403, "AccessDenied", "Request has expired")
        md5 = base64.b64encode(hashlib.md5(req.body).digest()).decode()
        given = req.headers.get("Content-MD5")
        if given and given != md5:
            return s3_error(400, "BadDigest", "The Content-MD5 you specified did not match what we received.")
        target = (self.state_dir / "uploads" / key).resolve()
        root = (self.state_dir / "uploads").resolve()
        if root not in target.parents:
            return s3_error(400, "InvalidArgument", "Invalid key")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        tmp.write_bytes(req.body)
        tmp.replace(target)
        meta = {"uploadKey": key, "size": len(req.body), "contentMd5": md5,
                "contentType": req.headers.get("Content-Type"),
                "serverSideEncryption": req.headers.get("x-amz-server-side-encryption")}
        target.with_name(target.name + ".meta.json").write_bytes(orjson.dumps(meta))
        return _Response(200, b"", {"ETag": f'"{hashlib.md5(req.body).hexdigest()}"'})

    # ----------------------------------------------------------------------------------------- migration target

    def _mt_answer(self, answer: mt.Answer) -> _Response:
        return _json(answer.status, answer.body, answer.headers)

    def _mt_settings_get(self, req: _Request) -> _Response:
        return _json(200, self.target.settings())

    def _mt_settings_put(self, req: _Request) -> _Response:
        body = req.json()
        if not isinstance(body, dict):
            raise QueryError("The request body must be a JSON object")
        try:
            return _json(200, self.target.set_settings(body))
        except ValueError as exc:
            raise QueryError(str(exc)) from exc

    def _mt_post(self, req: _Request) -> _Response:
        with self._lock:
            refused = set(self._refused_records)
        if refused:
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
                records = orjson.loads(req.body).get("interactions") or []
                hit = [(n, r.get("id")) for n, r in enumerate(records)
                       if isinstance(r, dict) and r.get("id") in refused]
                if hit:
                    return _json(400, mt.refusal(len(records), hit))
        return self._mt_answer(self.target.ingest(req.body, req.headers.get("X-Request-ID")))

    def _mt_get(self, req: _Request) -> _Response:
        rec = self.target.get(req.match["iid"])  # type: ignore[index]
        return _json(200, rec) if rec is not None else _err(404, *_NOT_FOUND)

    def _mt_list(self, req: _Request) -> _Response:
        size = min(req.int_arg("pageSize", 25), 500)
        number = req.int_arg("pageNumber", 1)
        if size < 1 or number < 1:
            raise QueryError("pageSize and pageNumber must be positive")
        lo = hi = None
        if req.arg("interval"):
            a, b = parse_interval(req.arg("interval"))
            lo = datetime.fromtimestamp(a / 1000, UTC).isoformat()
            hi = datetime.fromtimestamp(b / 1000, UTC).isoformat()
        entities, total = self.target.page(size, number, lo, hi)
        pages = math.ceil(total / size) if total else 0
        body: dict = {"entities": entities, "pageSize": size, "pageNumber": number, "total": total,
                      "pageCount": pages}
        if number < pages:
            body["nextUri"] = f"/api/v2/interactions?pageSize={size}&pageNumber={number + 1}"
        return _json(200, body)

    # ----------------------------------------------------------------------------------------- admin routes

    def _webhook_receive(self, req: _Request) -> _Response:
        try:
            payload = orjson.loads(req.body) if req.body else None
        except orjson.JSONDecodeError:
            return _json(400, {"error": "body is not JSON"})
        entry = {"received_at": time.time(), "headers": {k: v for k, v in req.headers.items()
                                                         if k.lower() not in ("authorization", "cookie")},
                 "payload": payload}
        with self._lock:
            self._webhooks.append(entry)
        return _json(202, {"accepted": True, "deliveries": len(self._webhooks)})

    def _admin_faults(self, req: _Request) -> _Response:
        body = req.json()
        if not isinstance(body, dict):
            raise QueryError("body must be an object of FaultConfig fields")
        try:
            self.set_faults(**body)
        except (ValueError, TypeError) as exc:
            raise QueryError(str(exc)) from exc
        return _json(200, dataclasses.asdict(self.faults))

    def _admin_fail_next(self, req: _Request) -> _Response:
        body = req.json()
        if not isinstance(body, dict) or "status" not in body:
            raise QueryError('body must be {"status": 429|5xx|0, "count": N, "retry_after": "..."}')
        try:
            self.fail_next(int(body["status"]), int(body.get("count", 1)), body.get("retry_after"))
        except ValueError as exc:
            raise QueryError(str(exc)) from exc
        return _json(200, {"queued": len(self._fail_next)})

    def _admin_clear_log(self, req: _Request) -> _Response:
        self.clear_request_log()
        return _Response(204)

    def _admin_clients(self, req: _Request) -> _Response:
        body = req.json()
        if not isinstance(body, dict) or not body.get("client_id") or not body.get("client_secret"):
            raise QueryError('body must be {"client_id", "client_secret", "permissions": [...]}')
        self.add_client(str(body["client_id"]), str(body["client_secret"]), list(body.get("permissions") or []))
        return _json(201, {"client_id": body["client_id"], "permissions": list(body.get("permissions") or [])})


def _retry_after_value(value: str | None) -> str:
    """``"lo-hi"`` -> a random whole number of seconds in [lo, hi]; anything else as given (default 1)."""
    text = str(value or "1")
    lo, sep, hi = text.partition("-")
    if sep and lo.strip().isdigit() and hi.strip().isdigit():
        return str(random.randint(int(lo), int(hi)))
    return text


def _drift(conv: dict) -> dict:
    """Schema drift: an unknown key, optional keys missing, attribute values no longer strings."""
    rng = random.Random(conv.get("conversationId"))
    conv["sandboxNewField"] = {"version": 2, "flags": ["drift"]}
    conv.pop("divisionIds", None)
    conv.pop("mediaStatsMinConversationMos", None)
    for p in conv.get("participants") or []:
        p["unknownParticipantKey"] = rng.random() < 0.5
        attrs = p.get("attributes")
        if attrs:
            for k in list(attrs)[:2]:
                attrs[k] = rng.choice([rng.randrange(1000), True, None, [attrs[k]]])
        for s in p.get("sessions") or []:
            s.pop("direction", None)
            for seg in s.get("segments") or []:
                seg.pop("disconnectType", None)
    return conv


class _HTTPHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 handler; everything is delegated to the emulator."""

    protocol_version = "HTTP/1.1"
    server_version = "GenesysCloudSandbox/1.0"
    timeout = 120
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle plus delayed ACK adds ~40 ms.
    disable_nagle_algorithm = True
    emulator: GenesysEmulator

    def setup(self) -> None:
        super().setup()
        with self.emulator._lock:
            self.emulator._connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.emulator._lock:
            self.emulator._connections.discard(self.connection)

    def _any(self) -> None:
        self.emulator.handle(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any

    def log_message(self, format: str, *args: object) -> None:  # the query string may hold a signature
        log.debug("%s %s", self.command, urlsplit(self.path).path)
