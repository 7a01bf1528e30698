"""The sandbox S3 answers checksums as S3 does: a body that does not match its checksum header is refused, and a
multipart object's composite checksum reads back as ``<digest>-<parts>`` from HEAD as from GET."""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import os
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from genesys_assets.sandbox import s3 as sandbox_s3
from genesys_assets.sandbox.s3 import SandboxS3, SandboxS3StartError

BUCKET = "sandbox-s3-test"


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    with SandboxS3(buckets=(BUCKET,)) as server:
        yield server.client()


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


@pytest.mark.parametrize(("algorithm", "field", "wrong"), [
    ("SHA256", "ChecksumSHA256", _b64(hashlib.sha256(b"other bytes").digest())),
    ("CRC32", "ChecksumCRC32", _b64(zlib.crc32(b"other bytes").to_bytes(4, "big"))),
])
def test_a_put_whose_checksum_does_not_match_is_refused_and_stores_nothing(
        s3: Any, algorithm: str, field: str, wrong: str) -> None:
    key = f"bad-{algorithm}"
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"these bytes", ChecksumAlgorithm=algorithm, **{field: wrong})
    assert refused.value.response["Error"]["Code"] == "BadDigest"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "KeyCount" in (listing := s3.list_objects_v2(Bucket=BUCKET, Prefix=key)) and listing["KeyCount"] == 0


def test_a_put_whose_checksum_matches_reads_it_back(s3: Any) -> None:
    body = os.urandom(5000)
    checksum = _b64(hashlib.sha256(body).digest())
    s3.put_object(Bucket=BUCKET, Key="good", Body=body, ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum)
    head = s3.head_object(Bucket=BUCKET, Key="good", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == checksum and "-" not in checksum


def test_a_multipart_objects_composite_checksum_carries_its_part_count_on_head_and_get(s3: Any) -> None:
    part = 5 << 20
    body = os.urandom(2 * part + 1000)
    config = TransferConfig(multipart_threshold=part, multipart_chunksize=part, use_threads=False)
    s3.upload_fileobj(io.BytesIO(body), BUCKET, "multi", Config=config,
                      ExtraArgs={"ChecksumAlgorithm": "SHA256", "ChecksumType": "COMPOSITE"})
    digests = b"".join(hashlib.sha256(body[i:i + part]).digest() for i in range(0, len(body), part))
    composite = f"{_b64(hashlib.sha256(digests).digest())}-3"
    assert s3.head_object(Bucket=BUCKET, Key="multi", ChecksumMode="ENABLED")["ChecksumSHA256"] == composite
    assert s3.get_object(Bucket=BUCKET, Key="multi", ChecksumMode="ENABLED")["ChecksumSHA256"] == composite
    s3.put_object(Bucket=BUCKET, Key="multi", Body=b"small now", ChecksumAlgorithm="SHA256")  # replaced by one PUT
    assert s3.head_object(Bucket=BUCKET, Key="multi", ChecksumMode="ENABLED")["ChecksumSHA256"] == _b64(
        hashlib.sha256(b"small now").digest())


def test_an_object_in_its_visibility_lag_is_missing_from_heads_and_listings_alike() -> None:
    with SandboxS3(buckets=(BUCKET,)) as server:
        s3 = server.client()
        server.set_head_lag(2)
        s3.put_object(Bucket=BUCKET, Key="day/a b=1.wav", Body=b"late")  # percent-encoded in listings
        server.set_head_lag(0)
        s3.put_object(Bucket=BUCKET, Key="day/now.wav", Body=b"now")

        def listed() -> list[str]:
            page = s3.list_objects_v2(Bucket=BUCKET, Prefix="day/")
            assert page["KeyCount"] == len(page.get("Contents", []))
            return [o["Key"] for o in page.get("Contents", [])]

        assert listed() == ["day/now.wav"]
        for _ in range(2):
            with pytest.raises(ClientError):
                s3.head_object(Bucket=BUCKET, Key="day/a b=1.wav")
        assert listed() == ["day/a b=1.wav", "day/now.wav"] and server.head_misses == 2


class _CtrlCWhileStarting(threading.Event):
    """The S3 server's ready event, for a start that Ctrl-C interrupts while it waits for the server thread: the
    first wait (``start``'s) raises KeyboardInterrupt; a later one (``stop_if_started``'s) lets the held server
    thread build its server, so the server is ready only once ``stop_if_started`` is waiting for it."""

    def __init__(self) -> None:
        super().__init__()
        self.stop_waits = threading.Event()
        self._interrupted = False

    def wait(self, timeout: float | None = None) -> bool:
        if not self._interrupted:
            self._interrupted = True
            raise KeyboardInterrupt
        self.stop_waits.set()
        return super().wait(timeout)


@pytest.mark.timeout(120)  # the failure it guards against is a hang: moto's stop joining a thread still serving
def test_a_server_interrupted_before_it_is_ready_is_stopped_not_leaked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stop that came before the server thread built its server must wait for it and stop it: moto's stop
    finds no server to shut down and joins a thread that goes on to serve."""
    server = SandboxS3(buckets=(BUCKET,))
    ready = server._server._server_ready_event = _CtrlCWhileStarting()
    built: list[tuple[threading.Thread, int]] = []
    make_server = sandbox_s3.make_server

    def held(*args: Any, **kwargs: Any) -> Any:
        ready.stop_waits.wait()
        made = make_server(*args, **kwargs)
        built.append((threading.current_thread(), made.server_address[1]))
        return made

    monkeypatch.setattr(sandbox_s3, "make_server", held)
    with pytest.raises(KeyboardInterrupt):
        server.start()
    assert not built  # its thread launched, its server not built yet
    server.stop()
    assert built, "stop returned without waiting for the server, which goes on to serve"
    [(thread, port)] = built
    assert not thread.is_alive()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_server_whose_thread_died_while_building_is_not_waited_for() -> None:
    """A server thread that died building its server (a port taken, say) never gets ready: stopping does not wait
    for it (it waited 10 s before)."""
    server = SandboxS3(buckets=(BUCKET,))
    died = threading.Thread(target=lambda: None)
    died.start()
    died.join()
    server._server._thread = died
    started = time.monotonic()
    server._server.stop_if_started()
    assert time.monotonic() - started < 5 and server._server._thread is None


@pytest.fixture
def taken_port() -> Iterator[socket.socket]:
    """A loopback socket listening on a port, as another program would hold it."""
    with socket.create_server(("127.0.0.1", 0)) as holder:
        yield holder


def _threads_started_since(before: set[threading.Thread]) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread not in before]


# The failures below used to hang: moto's start waits for a server thread that died, or is stuck, with no timeout.
@pytest.mark.timeout(10)
def test_a_start_on_a_taken_port_fails_fast_saying_so_and_leaves_nothing_running(taken_port: socket.socket) -> None:
    port = taken_port.getsockname()[1]
    server = SandboxS3(port=port, buckets=(BUCKET,))
    before = set(threading.enumerate())
    started = time.monotonic()
    with pytest.raises(SandboxS3StartError, match=rf"127\.0\.0\.1:{port} failed to start: .*in use.* port=0") as failed:
        server.start()
    assert time.monotonic() - started < 5
    assert isinstance(failed.value.__cause__, OSError) and failed.value.__cause__.errno == errno.EADDRINUSE
    assert not _threads_started_since(before)
    server.stop()  # nothing to stop
    assert server.endpoint_url == ""
    taken_port.close()
    with pytest.raises(ConnectionRefusedError):  # nothing of the sandbox's listens on the port either
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


@pytest.mark.timeout(10)
def test_a_start_whose_server_build_raises_fails_fast_with_that_error_and_leaves_no_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cause = RuntimeError("no server today")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise cause

    monkeypatch.setattr(sandbox_s3, "make_server", broken)
    server = SandboxS3(buckets=(BUCKET,))
    before = set(threading.enumerate())
    started = time.monotonic()
    with pytest.raises(SandboxS3StartError, match="failed to start: no server today") as failed:
        server.start()
    assert time.monotonic() - started < 5 and failed.value.__cause__ is cause
    assert not _threads_started_since(before)
    server.stop()


@pytest.mark.timeout(10)
def test_a_start_whose_server_is_not_ready_in_time_fails_and_the_late_server_never_serves(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Its thread, stuck building the server, cannot be killed; once the build returns, it closes the server and
    ends instead of serving."""
    monkeypatch.setattr(sandbox_s3, "READY_TIMEOUT", 0.5)
    release = threading.Event()
    built: list[int] = []
    make_server = sandbox_s3.make_server

    def stuck(*args: Any, **kwargs: Any) -> Any:
        release.wait()
        made = make_server(*args, **kwargs)
        built.append(made.server_address[1])
        return made

    monkeypatch.setattr(sandbox_s3, "make_server", stuck)
    server = SandboxS3(buckets=(BUCKET,))
    before = set(threading.enumerate())
    started = time.monotonic()
    try:
        with pytest.raises(SandboxS3StartError, match=r"not ready within 0\.5 s"):
            server.start()
        assert time.monotonic() - started < 5
        server.stop()  # nothing to stop: returns at once though the thread is still stuck
        [thread] = _threads_started_since(before)
    finally:
        release.set()  # a failed assertion must not leave the thread stuck
    thread.join(timeout=5)
    assert not thread.is_alive()
    [port] = built
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()

