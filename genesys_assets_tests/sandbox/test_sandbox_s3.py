"""The sandbox S3 answers checksums as S3 does: a body that does not match its checksum header is refused, and a
multipart object's composite checksum reads back as ``<digest>-<parts>`` from HEAD as from GET."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from genesys_assets.sandbox.s3 import SandboxS3

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
