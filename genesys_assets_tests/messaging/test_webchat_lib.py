"""Pure pieces of the archive: the allow-list and stripping rule, the record builder, the resumable gzip parts,
the policy rules, the audit event and the webhook delivery."""

from __future__ import annotations

import gzip
import http.server
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import orjson
import pytest

from genesys_assets.lib.pii import HASHED_PREFIX, AddressHasher
from genesys_assets.lib.raw_redaction import redact_page
from genesys_assets.lib.webchat_audit import audit_event, audit_path, upsert_events
from genesys_assets.lib.webchat_parts import Checkpoint, PartWriter, ResumeError, iter_gzip_lines, read_chunks
from genesys_assets.lib.webchat_policy import (
    ArchivePolicyError,
    check_quota,
    check_residency,
    effective_region,
    parse_allowed_regions,
)
from genesys_assets.lib.webchat_record import ALLOW_LIST, build_record, chunks, keys_outside, strip, unsigned_url
from genesys_assets.lib.webchat_webhook import deliver

HASHER = AddressHasher("k" * 32)
CONVERSATION = {
    "conversationId": "c-1", "conversationStart": "2024-01-15T10:00:00.000Z",
    "conversationEnd": "2024-01-15T10:20:00.000Z", "originatingDirection": "inbound", "divisionIds": ["d"],
    "sandboxNewField": {"version": 2},
    "participants": [
        {"participantId": "p-1", "participantName": "Customer", "purpose": "customer", "attributes": {"a": "b"},
         "sessions": [{"mediaType": "message", "messageType": "webmessaging", "addressFrom": "x@y",
                       "segments": [{"queueId": "q-1"}]}]},
        {"participantId": "p-2", "participantName": "Agent One", "purpose": "agent", "userId": "u-1"},
    ],
}
BULK = [
    {"id": "m-2", "timestamp": "2024-01-15T10:05:00.000Z", "direction": "outbound", "fromAddress": "dep",
     "toAddress": "cust", "messengerType": "webmessaging", "status": "sent", "conversationId": "c-1",
     "normalizedMessage": {"id": "m-2", "text": "How can I help?", "type": "Text", "direction": "Outbound",
                           "channel": {"from": {"id": "dep"}, "to": {"id": "cust"}}}},
    {"id": "m-1", "timestamp": "2024-01-15T10:01:00.000Z", "direction": "inbound", "selfUri": "/x",
     "normalizedMessage": {"id": "m-1", "text": "Hello", "debugFlags": ["x"], "content": [
         {"contentType": "Attachment", "attachment": {"id": "a-1", "mediaType": "Image", "url": "https://u/a.png",
                                                      "mime": "image/png", "filename": "a.png",
                                                      "contentSizeBytes": 1234}}]}},
]


def test_allow_list_is_the_seed_field_set() -> None:
    assert set(ALLOW_LIST) == {"id", "type", "startTime", "endTime", "mediaType", "participants", "messages"}
    assert set(ALLOW_LIST["participants"]) == {"id", "type", "name"}  # type: ignore[arg-type]
    assert set(ALLOW_LIST["messages"]) == {"id", "timestamp", "direction", "text", "media"}  # type: ignore[arg-type]


def test_strip_removes_everything_outside_the_allow_list_at_every_level() -> None:
    dirty = {"id": "c", "routingId": "r", "debug": True, "participants": [{"id": "p", "type": "agent", "name": "n",
             "userId": "u", "queue": {"id": "q"}}], "messages": [{"id": "m", "text": "t", "fromAddress": "a",
             "media": [{"id": "x", "url": "u", "secretToken": "s"}]}]}
    clean = strip(dirty)
    assert clean == {"id": "c", "participants": [{"id": "p", "type": "agent", "name": "n"}],
                     "messages": [{"id": "m", "text": "t", "media": [{"id": "x", "url": "u"}]}]}
    assert keys_outside(clean) == []
    assert sorted(keys_outside(dirty)) == ["debug", "messages[].fromAddress", "messages[].media[].secretToken",
                                           "participants[].queue", "participants[].userId", "routingId"]
    assert keys_outside({"participants": "not-a-list"}) == ["participants (scalar where an object is declared)"]


def test_record_builder_maps_the_real_shapes_and_strips() -> None:
    record = build_record(CONVERSATION, BULK, HASHER)
    assert record == {
        "id": "c-1", "type": "webmessaging", "startTime": "2024-01-15T10:00:00.000Z",
        "endTime": "2024-01-15T10:20:00.000Z", "mediaType": "message",
        "participants": [{"id": "p-1", "type": "customer", "name": "Customer"},
                         {"id": "p-2", "type": "agent", "name": "Agent One"}],
        "messages": [
            {"id": "m-1", "timestamp": "2024-01-15T10:01:00.000Z", "direction": "inbound", "text": "Hello",
             "media": [{"id": "a-1", "url": "https://u/a.png", "mediaType": "image/png", "name": "a.png",
                        "contentLengthBytes": 1234}]},
            {"id": "m-2", "timestamp": "2024-01-15T10:05:00.000Z", "direction": "outbound",
             "text": "How can I help?", "media": []},
        ],
    }
    assert keys_outside(record) == []
    legacy = build_record(CONVERSATION, [{"id": "m", "timestamp": "t", "direction": "Inbound", "textBody": "hi"}],
                          HASHER)
    assert legacy["messages"] == [{"id": "m", "timestamp": "t", "direction": "inbound", "text": "hi", "media": []}]


def test_a_participant_name_that_is_a_phone_number_is_archived_as_its_hash() -> None:
    participants = [{**CONVERSATION["participants"][0], "participantName": "+1 (317) 555-0100"},
                    *CONVERSATION["participants"][1:]]
    record = build_record({**CONVERSATION, "participants": participants}, BULK, HASHER)
    names = [p["name"] for p in record["participants"]]
    # The value the analytics participants table holds: the raw landing's redaction of the same name.
    page = redact_page(orjson.dumps({"conversations": [{**CONVERSATION, "participants": participants}]}), HASHER)
    landed = orjson.loads(page)["conversations"][0]["participants"][0]["participantName"]
    assert names == [landed, "Agent One"] and landed == HASHED_PREFIX + HASHER.hash("+13175550100")
    assert "555" not in orjson.dumps(record["participants"]).decode()


S3_PRESIGNED = ("https://bucket.s3.amazonaws.com/media/a.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                "&X-Amz-Credential=ASIAEXAMPLE%2F20261203%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261203T000000Z"
                "&X-Amz-Expires=600&X-Amz-SignedHeaders=host&X-Amz-Security-Token=IQoJb3JpZ2luX2Vj"
                "&X-Amz-Signature=0f1e2d3c")


@pytest.mark.parametrize(("url", "archived"), [
    (S3_PRESIGNED, "https://bucket.s3.amazonaws.com/media/a.png"),
    ("https://d1.cloudfront.net/a.png?Expires=1764720000&Signature=abc~&Key-Pair-Id=K2", "https://d1.cloudfront.net/a.png"),
    ("https://acct.blob.core.windows.net/c/a.png?sv=2022-11-02&se=2026-12-04&sp=r&sig=abc%3D",
     "https://acct.blob.core.windows.net/c/a.png"),
    ("https://storage.googleapis.com/b/a.png?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature=ab",
     "https://storage.googleapis.com/b/a.png"),
    ("https://h.example/a.png#access_token=xyz", "https://h.example/a.png"),
    ("https://user:secret@h.example/a.png?size=large", "https://h.example/a.png?size=large"),
    ("https://user:secret@[::1/a.png?sig=1", "https://[::1/a.png"),  # malformed: nothing after it kept
    ("https://u@x:secret@[::1/a.png", "https://[::1/a.png"),
    ("https://h.example/a.png?a=1;X-Amz-Signature=abc", "https://h.example/a.png"),  # ";" separates too
    ("https://h.example/a.png?X%2DAmz%2DDate=20261203", "https://h.example/a.png"),  # signs only once decoded
    *((f"https://h.example/a.png?{name}=abc", "https://h.example/a.png") for name in (
        "key", "apikey", "api_key", "Policy", "Key-Pair-Id", "AWSAccessKeyId", "GoogleAccessId", "Authorization",
        "hdnts", "code", "secret", "password", "pwd", "auth", "accessKey", "access_key", "subscription-key",
        "sas_key")),
    ("https://h.example/a.png?v=1#/view?access_token=abc", "https://h.example/a.png"),  # a fragment route
    ("https://h.example/a.png?q-signature=abc&hdnts=exp~acl~hmac", "https://h.example/a.png"),
    ("ftp://user:secret@h.example/a.png", "ftp://h.example/a.png"),
    ("https://h.example/a.png?size=large#p=2", "https://h.example/a.png?size=large#p=2"),  # unsigned: unchanged
    ("urn:media:a-1", "urn:media:a-1"),
    (None, None),
])
def test_a_presigned_attachment_url_is_archived_without_its_signature(url: str | None, archived: str | None) -> None:
    assert unsigned_url(url) == archived


def test_the_archive_never_holds_an_attachment_url_s_credentials() -> None:
    message = {**BULK[1], "normalizedMessage": {**BULK[1]["normalizedMessage"], "content": [
        {"contentType": "Attachment", "attachment": {"id": "a-9", "url": S3_PRESIGNED, "mime": "image/png",
                                                     "filename": "a.png"}}]}}
    record = build_record(CONVERSATION, [BULK[0], message], HASHER)
    media = next(m for msg in record["messages"] for m in msg["media"] if m["id"] == "a-9")
    assert media["url"] == "https://bucket.s3.amazonaws.com/media/a.png"
    text = orjson.dumps(record).decode()
    assert "X-Amz" not in text and "ASIAEXAMPLE" not in text and "IQoJ" not in text


def test_chunks_never_exceed_1000() -> None:
    ids = [str(i) for i in range(2345)]
    parts = list(chunks(ids))
    assert [len(p) for p in parts] == [1000, 1000, 345] and [i for p in parts for i in p] == ids


def _pages(n: int) -> list[list[bytes]]:
    return [[orjson.dumps({"id": f"c-{p}-{i}", "text": "hello " * (i % 7)}) + b"\n" for i in range(25)]
            for p in range(n)]


def _write(directory: Path, pages: list[list[bytes]], checkpoint: Checkpoint | None = None,
           start: int = 0) -> Checkpoint:
    checkpoint = checkpoint or Checkpoint(day="2024-01-15", plan="p")
    writer = PartWriter(directory, checkpoint, part_max_bytes=3000)
    for index, page in enumerate(pages[start:], start=start):
        writer.write_page(page)
        checkpoint.pages = index + 1
        checkpoint.save(directory)
    writer.close_part()
    return checkpoint


def test_parts_are_valid_gzip_roll_over_and_resume_to_identical_bytes(tmp_path: Path) -> None:
    pages = _pages(8)
    clean = tmp_path / "clean"
    clean.mkdir()
    done = _write(clean, pages)
    names = [p.name for p in done.parts]
    assert len(names) > 2 and names[0] == "part-0000.ndjson.gz"
    lines = b"".join(gzip.decompress((clean / n).read_bytes()) for n in names)
    assert lines == b"".join(b"".join(p) for p in pages)
    assert all(p.sha256 for p in done.parts) and done.conversations_written == 200

    # A run dies after page 5 was written but before its checkpoint: the extra bytes are cut off on resume.
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    checkpoint = Checkpoint(day="2024-01-15", plan="p")
    writer = PartWriter(crashed, checkpoint, part_max_bytes=3000)
    for index, page in enumerate(pages[:5]):
        writer.write_page(page)
        checkpoint.pages = index + 1
        checkpoint.save(crashed)
    writer.write_page(pages[5])  # not checkpointed
    saved = Checkpoint.load(crashed)
    assert saved is not None and saved.pages == 5
    partial = saved.current
    assert partial is not None
    assert [orjson.loads(x)["id"] for x in iter_gzip_lines(read_chunks(crashed / partial.name), complete=False)
            if x][-1] == "c-5-24", "an unfinished part reads up to its last page"
    resumed = _write(crashed, pages, saved, start=5)
    assert [(p.name, p.sha256) for p in resumed.parts] == [(p.name, p.sha256) for p in done.parts]
    for name in names:
        assert (crashed / name).read_bytes() == (clean / name).read_bytes()


def test_resume_refuses_when_files_do_not_match(tmp_path: Path) -> None:
    checkpoint = Checkpoint(day="2024-01-15", plan="p")
    writer = PartWriter(tmp_path, checkpoint, part_max_bytes=10**6)
    writer.write_page(_pages(1)[0])
    checkpoint.save(tmp_path)
    (tmp_path / "part-0000.ndjson.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(ResumeError):
        PartWriter(tmp_path, Checkpoint.load(tmp_path), part_max_bytes=10**6)  # type: ignore[arg-type]
    (tmp_path / "checkpoint.json").write_bytes(b"{not json")
    assert Checkpoint.load(tmp_path) is None


def test_iter_gzip_lines_rejects_truncated_and_corrupt_files() -> None:
    data = gzip.compress(b'{"id":"a"}\n{"id":"b"}\n')
    assert list(iter_gzip_lines([data])) == [b'{"id":"a"}', b'{"id":"b"}']
    with pytest.raises(ValueError, match="truncated"):
        list(iter_gzip_lines([data[:-6]]))
    with pytest.raises(ValueError):
        list(iter_gzip_lines([data[:12] + b"\xff" * 10 + data[22:]]))


def test_residency_rules() -> None:
    emulator = "http://127.0.0.1:8123"
    assert effective_region(None, emulator) == effective_region("", "http://localhost:1") == "sandbox"
    assert effective_region("eu-west-1", emulator) == effective_region("mypurecloud.ie", emulator) == "eu_west_1"
    assert effective_region(None, "https://api.mypurecloud.ie") == "eu_west_1"  # the host says where the data is
    assert effective_region("eu_central_1", "https://genesys-proxy.corp.example") == "eu_central_1"
    with pytest.raises(ArchivePolicyError, match=r"'genesys-proxy\.corp\.example'.*Set GENESYS_REGION"):
        effective_region(None, "https://genesys-proxy.corp.example")
    assert parse_allowed_regions(None) == ["sandbox"]
    assert parse_allowed_regions("eu-west-1, us_east_1 ,sandbox") == ["eu_west_1", "sandbox", "us_east_1"]
    check_residency("eu_west_1", ["eu_west_1"])
    with pytest.raises(ArchivePolicyError, match="ALLOWED_REGIONS"):
        check_residency("us_east_1", parse_allowed_regions(None))


def test_quota_rule() -> None:
    assert check_quota(1000, 1048.576, 1.0) == pytest.approx(1.0)
    with pytest.raises(ArchivePolicyError, match=r"\(measured average of earlier days\).*ARCHIVE_QUOTA_MB=1"):
        check_quota(1001, 1048.576, 1.0)
    with pytest.raises(ArchivePolicyError, match=r"\(default estimate\)"):
        check_quota(1001, 1048.576, 1.0, measured=False)


def test_audit_event_upsert_is_idempotent(tmp_path: Path) -> None:
    event = audit_event(event_type="ARCHIVE_EXPORT_COMPLETED", event_time="2024-01-16T01:02:03.456Z",
                        source="webchat_archive", day=date(2024, 1, 15), records=3, bytes_=99, destination="/lake/x",
                        data_classification="C", retention_directive="R", region="sandbox", details={"k": 1})
    assert audit_path(event).startswith("audit/events/source=webchat_archive/day=2024-01-15/20240116T010203456Z-")
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        assert upsert_events(con, [event]) == 1
        assert upsert_events(con, [event]) == 1
        assert con.execute("SELECT count(*), max(records), max(details) FROM audit_events").fetchone() == (
            1, 3, '{"k":1}')


class _Receiver(http.server.BaseHTTPRequestHandler):
    answers: list[int] = []
    seen: list[bytes] = []

    def do_POST(self) -> None:
        self.seen.append(self.rfile.read(int(self.headers["Content-Length"])))
        status = self.answers.pop(0) if self.answers else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Receiver.answers, _Receiver.seen = [], []
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Receiver
    server.shutdown()
    server.server_close()


def test_webhook_retries_5xx_and_429_with_backoff_then_delivers(receiver: tuple[str, type[_Receiver]]) -> None:
    url, handler = receiver
    handler.answers = [503, 429, 202]
    waits: list[float] = []
    result = deliver(url, {"status": "completed"}, max_attempts=4, backoff_base_seconds=1, sleep=waits.append)
    assert result.delivered and result.attempts == 3 and result.status == 202
    assert len(handler.seen) == 3 and orjson.loads(handler.seen[0]) == {"status": "completed"}
    assert len(waits) == 2 and 0.5 <= waits[0] <= 1 and 1 <= waits[1] <= 2


def test_webhook_gives_up_after_max_attempts_and_does_not_retry_4xx(receiver: tuple[str, type[_Receiver]]) -> None:
    url, handler = receiver
    handler.answers = [500] * 5
    failed = deliver(url, {}, max_attempts=3, sleep=lambda s: None)
    assert not failed.delivered and failed.attempts == 3 and failed.error == "HTTP 500"
    handler.answers = [400]
    refused = deliver(url, {}, max_attempts=3, sleep=lambda s: None)
    assert not refused.delivered and refused.attempts == 1 and refused.status == 400
