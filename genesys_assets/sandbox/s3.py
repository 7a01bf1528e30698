"""S3 for the sandbox: a moto server on loopback with the staging and lake buckets created.

Objects live in the server's memory, so they last as long as the sandbox runs.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import logging
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_plus

import boto3
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

SANDBOX_ACCESS_KEY = "sandbox-access-key"
SANDBOX_SECRET_KEY = "sandbox-secret-key"
SANDBOX_REGION = "us-east-1"
STAGING_BUCKET = "genesys-recordings-staging"
READY_TIMEOUT = 10.0  # seconds for the server thread to build its server: a socket bind, normally instant


class SandboxS3StartError(RuntimeError):
    """The sandbox S3 server did not start; nothing of it listens (a thread stuck building its server closes it
    once built)."""


class HeadLag:
    """WSGI middleware: after each PUT of a key, its next ``lag`` HEADs answer 404 and, until they have, the
    bucket's listings leave it out (read-after-write lag).

    The eventual visibility a verifying uploader must wait out; ``lag = 0`` (the default) is off.
    """

    def __init__(self, app: Callable) -> None:
        self.app = app
        self.lag = 0
        self.misses = 0
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        with self._lock:
            if method == "PUT" and self.lag and "uploadId" not in query:
                self._pending[path] = self.lag
            elif method == "POST" and self.lag and "uploadId" in query:
                self._pending[path] = self.lag  # a completed multipart upload
            elif method == "HEAD" and self._pending.get(path, 0) > 0:
                self._pending[path] -= 1
                self.misses += 1
                start_response("404 Not Found", [("Content-Length", "0")])
                return [b""]
            elif method == "GET" and "list-type=2" in query:
                bucket = path.rstrip("/") + "/"
                hidden = {p[len(bucket):] for p, n in self._pending.items() if n > 0 and p.startswith(bucket)}
                if hidden:
                    return self._listing_without(environ, start_response, hidden, "encoding-type=url" in query)
        return self.app(environ, start_response)

    def _listing_without(self, environ: dict, start_response: Callable, hidden: set[str],
                         encoded: bool) -> Iterable[bytes]:
        answer: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            answer.update(status=status, headers=headers)
            return lambda data: None

        body = b"".join(self.app(environ, capture))
        kept = re.sub(rb"<Contents>.*?</Contents>",
                      lambda m: b"" if _listed_key(m.group(0), encoded) in hidden else m.group(0), body,
                      flags=re.DOTALL)
        dropped = body.count(b"<Contents>") - kept.count(b"<Contents>")
        kept = re.sub(rb"<KeyCount>(\d+)</KeyCount>",
                      lambda m: b"<KeyCount>%d</KeyCount>" % (int(m.group(1)) - dropped), kept)
        headers = [(k, str(len(kept)) if k.lower() == "content-length" else v) for k, v in answer["headers"]]
        start_response(answer["status"], headers)
        return [kept]


def _listed_key(contents: bytes, url_encoded: bool) -> str:
    """The key of one listed object (``encoding-type=url``: percent-encoded, as botocore asks by default)."""
    match = re.search(rb"<Key>(.*?)</Key>", contents, flags=re.DOTALL)
    key = html.unescape(match.group(1).decode()) if match else ""
    return unquote_plus(key) if url_encoded else key


def _sha256(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


def _crc32(body: bytes) -> bytes:
    return zlib.crc32(body).to_bytes(4, "big")


class Checksums:
    """WSGI middleware: checksums as S3 treats them, where moto does not.

    * A PUT (an object or a part) whose ``x-amz-checksum-sha256`` or ``-crc32`` header does not match its body is
      refused with 400 ``BadDigest``; moto stores the value unchecked. Bodies sent ``aws-chunked`` (checksum in a
      trailer) pass unchecked.
    * A HEAD in checksum mode of a multipart object reports its composite checksum as ``<digest>-<parts>``, as S3
      (and moto's own GET) does; moto's HEAD leaves the part count off.
    """

    ALGORITHMS = {"HTTP_X_AMZ_CHECKSUM_SHA256": ("SHA256", _sha256), "HTTP_X_AMZ_CHECKSUM_CRC32": ("CRC32", _crc32)}

    def __init__(self, app: Callable) -> None:
        self.app = app
        self._parts: dict[str, int] = {}  # path -> parts of the multipart upload that completed it
        self._lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO", "")
        multipart = "uploadId=" in environ.get("QUERY_STRING", "")
        if method == "PUT":
            if not multipart:
                with self._lock:
                    self._parts.pop(path, None)
            return self._checked_put(environ, start_response)
        if method == "POST" and multipart:
            body = self._body(environ)
            with self._lock:
                self._parts[path] = body.count(b"<Part>")
        elif method == "DELETE" and not multipart:
            with self._lock:
                self._parts.pop(path, None)
        elif method == "HEAD" and environ.get("HTTP_X_AMZ_CHECKSUM_MODE") == "ENABLED" and path in self._parts:
            return self.app(environ, self._with_part_count(start_response, self._parts[path]))
        return self.app(environ, start_response)

    @staticmethod
    def _body(environ: dict) -> bytes:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        return body

    def _checked_put(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        claims = [(environ[h], *self.ALGORITHMS[h]) for h in self.ALGORITHMS if environ.get(h)]
        if not claims or not environ.get("CONTENT_LENGTH") or "aws-chunked" in environ.get("HTTP_CONTENT_ENCODING", ""):
            return self.app(environ, start_response)
        body = self._body(environ)
        for claimed, name, digest in claims:
            if base64.b64encode(digest(body)).decode() != claimed:
                payload = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>BadDigest</Code><Message>The '
                           f"{name} you specified did not match the calculated checksum.</Message></Error>").encode()
                start_response("400 Bad Request", [("Content-Type", "application/xml"),
                                                   ("Content-Length", str(len(payload)))])
                return [payload]
        return self.app(environ, start_response)

    @staticmethod
    def _with_part_count(start_response: Callable, parts: int) -> Callable:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if ("x-amz-checksum-type", "COMPOSITE") in [(k.lower(), v) for k, v in headers]:
                headers = [(k, f"{v}-{parts}" if k.lower().startswith("x-amz-checksum-") and k.lower() !=
                            "x-amz-checksum-type" and "-" not in v else v) for k, v in headers]
            return start_response(status, headers, exc_info)
        return start


class S3Dispatcher(DomainDispatcherApplication):
    """moto's dispatcher for a server that only speaks S3.

    moto's own works out the service of every request anew, listing its package folder on disk (~100 path checks)
    while holding one lock: ~6 ms a request, one request at a time. This one answers every request with the S3
    app, made once.
    """

    def __init__(self) -> None:
        super().__init__(create_backend_app)
        self._s3 = create_backend_app("s3")

    def get_application(self, environ: dict[str, Any]) -> Any:
        return self._s3


class _Server(ThreadedMotoServer):
    """moto's threaded server with the HEAD-lag and checksum-check middleware in front of it."""

    def __init__(self, ip_address: str, port: int) -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        self.head_lag = HeadLag(Checksums(S3Dispatcher()))
        self._build_error: BaseException | None = None
        self._handover = threading.Lock()  # between start giving up on the thread and the thread getting ready

    def start(self) -> None:
        """Start the server thread and wait for its server, but not forever as moto's ``start`` does: raise
        ``SandboxS3StartError`` if the thread dies building it (a port taken, say) or is not ready within
        ``READY_TIMEOUT``. A thread given up on closes its server if it ever builds it, so nothing is left to stop."""
        self._build_error = None
        self._thread = threading.Thread(target=self._server_entry, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + READY_TIMEOUT
        while self._thread.is_alive() and time.monotonic() < deadline:
            if self._server_ready_event.wait(timeout=0.05):
                return
        with self._handover:
            if self._server_ready_event.is_set():  # ready just now
                return
            died, self._thread = not self._thread.is_alive(), None
        where = f"the sandbox S3 server on {self._ip_address}:{self._port}"
        if died:
            raise SandboxS3StartError(
                f"{where} failed to start: {self._build_error or 'its thread ended'}. If the port is in use, stop "
                "the program holding it or pass port=0 for a free one; else fix the cause and start again."
            ) from self._build_error
        raise SandboxS3StartError(f"{where} was not ready within {READY_TIMEOUT:g} s; check the machine is not "
                                  "overloaded and start again.")

    def stop_if_started(self) -> None:
        """Stop the server if ``start`` ran, also when it was interrupted before the server was ready (moto's
        ``stop`` fails on a server never started, and hangs on one whose thread has not built it yet): wait for the
        server as long as its thread lives, however slow the build, and not at all for a thread that died."""
        if self._thread is None:
            return
        while self._thread.is_alive() and not self._server_ready_event.wait(timeout=0.05):
            pass
        self.stop()
        self._thread = None

    def _server_entry(self) -> None:
        """Build the server and serve; a build's error is kept for ``start`` to report (a thread's own goes no
        further than stderr), and a server built after ``start`` gave up on this thread is closed, not served."""
        try:
            server = make_server(self._ip_address, self._port, self.head_lag, True,
                                 request_handler=MotoRequestHandler)
        except (Exception, SystemExit) as error:  # werkzeug turns a bind's OSError (a port taken) into SystemExit
            self._build_error = (error.__context__ or error) if isinstance(error, SystemExit) else error
            return
        with self._handover:
            if self._thread is not threading.current_thread():
                server.server_close()
                return
            self._server = server
            self._server_ready_event.set()
        server.serve_forever()


class SandboxS3:
    """A local S3 endpoint; ``with SandboxS3() as s3: s3.endpoint_url``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, buckets: tuple[str, ...] = (STAGING_BUCKET,)):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the sandbox S3 binds loopback only")
        self._server = _Server(host, port)
        self._buckets = buckets
        self.endpoint_url = ""

    def start(self) -> SandboxS3:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per request otherwise
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        client = self.client()
        for bucket in self._buckets:
            client.create_bucket(Bucket=bucket)
        return self

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=SANDBOX_ACCESS_KEY,
            aws_secret_access_key=SANDBOX_SECRET_KEY,
            region_name=SANDBOX_REGION,
        )

    def set_head_lag(self, lag: int) -> None:
        """After each PUT, the key's next ``lag`` HEADs answer 404 (0: visible at once)."""
        self._server.head_lag.lag = lag

    @property
    def head_misses(self) -> int:
        """HEADs answered 404 by the lag so far."""
        return self._server.head_lag.misses

    def stop(self) -> None:
        self._server.stop_if_started()
        self.endpoint_url = ""

    def __enter__(self) -> SandboxS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
