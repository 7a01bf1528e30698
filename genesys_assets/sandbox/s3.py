"""S3 for the sandbox: a moto server on loopback with the staging and lake buckets created.

Objects live in the server's memory, so they last as long as the sandbox runs.
"""

from __future__ import annotations

import logging
from typing import Any

import boto3
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

SANDBOX_ACCESS_KEY = "sandbox-access-key"
SANDBOX_SECRET_KEY = "sandbox-secret-key"
SANDBOX_REGION = "us-east-1"
STAGING_BUCKET = "genesys-recordings-staging"


class SandboxS3:
    """A local S3 endpoint; ``with SandboxS3() as s3: s3.endpoint_url``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, buckets: tuple[str, ...] = (STAGING_BUCKET,)):
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
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

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> SandboxS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
