"""S3 for the sandbox: a moto server on loopback with the staging and lake buckets created.

Objects live in the server's memory, so they last as long as the sandbox runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import boto3
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

SANDBOX_ACCESS_KEY = "sandbox-access-key"
SANDBOX_SECRET_KEY = "sandbox-secret-key"
SANDBOX_REGION = "us-east-1"
STAGING_BUCKET = "genesys-recordings-staging"


class HeadLag:
    """WSGI middleware: after each PUT of a key, its next ``lag`` HEADs answer 404 (read-after-write lag).

    The eventual visibility a HEAD-verifying uploader must wait out; ``lag = 0`` (the default) is off.
    """

    def __init__(self, app: Callable) -> None:
        self.app = app
        self.lag = 0
        self.misses = 0
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO", "")
        with self._lock:
            if method == "PUT" and self.lag and "uploadId" not in environ.get("QUERY_STRING", ""):
                self._pending[path] = self.lag
            elif method == "POST" and self.lag and "uploadId" in environ.get("QUERY_STRING", ""):
                self._pending[path] = self.lag  # a completed multipart upload
            elif method == "HEAD" and self._pending.get(path, 0) > 0:
                self._pending[path] -= 1
                self.misses += 1
                start_response("404 Not Found", [("Content-Length", "0")])
                return [b""]
        return self.app(environ, start_response)


class _Server(ThreadedMotoServer):
    """moto's threaded server with the HEAD-lag middleware in front of it."""

    def __init__(self, ip_address: str, port: int) -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        self.head_lag = HeadLag(DomainDispatcherApplication(create_backend_app))

    def _server_entry(self) -> None:
        self._server = make_server(self._ip_address, self._port, self.head_lag, True,
                                   request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


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
        self._server.stop()

    def __enter__(self) -> SandboxS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
