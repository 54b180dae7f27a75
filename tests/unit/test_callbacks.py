"""Callbacks, pure parts: the signature (and the client's verify_signature), the SSRF classifier,
the retry delay, and the POST body being exactly the task JSON of GET /api/v1/tasks/{id}."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
from datetime import UTC, datetime
from uuid import uuid4

import orjson
import pytest

from taskcore.callbacks import refused_address, retry_delay, sign, task_document
from taskcore.domain import Task, TaskStatus
from taskflow_api.schemas import TaskOut


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id": "x"}'
    header = sign(b"s3cret", body, 1_700_000_000)
    t, v1 = header.split(",")
    assert t == "t=1700000000"
    assert v1 == "v1=" + hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fd12:3456::1", "unique-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("100.64.0.1", "not a public"),  # carrier-grade NAT
    ],
)
def test_non_public_addresses_are_refused_naming_why(address: str, why: str) -> None:
    reason = refused_address(ipaddress.ip_address(address))
    assert reason is not None
    assert why in reason


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert refused_address(ipaddress.ip_address(address)) is None


def test_the_retry_delay_grows_exponentially_with_jitter_and_is_capped_at_an_hour() -> None:
    rng = random.Random(7)
    for attempt in range(1, 20):
        exp = min(3600.0, 10 * 2 ** (attempt - 1))
        delay = retry_delay(attempt, 10, rng=rng)
        assert exp / 2 <= delay <= exp
    assert retry_delay(30, 10, rng=rng) <= 3600


def _task(**kw: object) -> Task:
    now = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    values: dict[str, object] = {
        "id": uuid4(),
        "task_type": "test",
        "payload": {"a": [1, 2]},
        "status": TaskStatus.SUCCEEDED,
        "priority": 1,
        "attempt": 1,
        "max_retries": 3,
        "timeout_seconds": 30,
        "created_at": now,
        "updated_at": now,
        "run_at": now,
        "started_at": now,
        "finished_at": datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC),
        "cancel_requested": False,
        "result": {"ok": True},
        "error": None,
        "callback_url": "https://example.com/h",
    } | kw
    return Task(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "task",
    [
        _task(),
        _task(workflow_id=uuid4(), ref="a", depends_on=(uuid4(),), limit_keys=("k",), unique_key="u"),
        _task(schedule_id=uuid4(), scheduled_for=datetime(2026, 1, 1, tzinfo=UTC), progress={"fraction": 1}),
        _task(status=TaskStatus.FAILED, result=None, error={"type": "Boom", "message": "x"}, started_at=None),
    ],
)
def test_the_body_is_the_task_json_of_the_api(task: Task) -> None:
    api = orjson.loads(TaskOut.of(task).model_dump_json())
    assert orjson.loads(orjson.dumps(task_document(task))) == api


def test_verify_signature_accepts_what_taskflow_signs_and_nothing_else() -> None:
    from taskflow_client import verify_signature

    body = b'{"id": "x", "status": "succeeded"}'
    now = 1_700_000_000
    header = sign(b"s3cret", body, now)
    assert verify_signature("s3cret", header, body, now=now + 10)
    assert verify_signature(b"s3cret", header, body, tolerance=60, now=now - 30)
    assert not verify_signature("other", header, body, now=now)
    assert not verify_signature("s3cret", header, body + b" ", now=now)
    assert not verify_signature("s3cret", header, body, tolerance=300, now=now + 301)  # replayed later
    assert not verify_signature("s3cret", None, body, now=now)
    assert not verify_signature("s3cret", "garbage", body, now=now)
    assert not verify_signature("s3cret", f"t={now}", body, now=now)
    rotated = f"t={now},v1={'0' * 64},{header.split(',')[1]}"
    assert verify_signature("s3cret", rotated, body, now=now)


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",
        "http://exa mple.com/",
        "http://example.com:99999/",
        "http://example.com:0/",
        "http://example.com/\x00",
        "javascript:alert(1)",
        "//example.com/x",
        "http://",
        "https://u@example.com/",
    ],
)
def test_malformed_callback_urls_are_a_validation_error_naming_the_field(url: str) -> None:
    from taskcore.callbacks import check_callback_url
    from taskcore.errors import TaskValidationError
    from taskcore.settings import Settings

    with pytest.raises(TaskValidationError) as raised:
        check_callback_url(url, Settings(webhook_secret="s"))  # type: ignore[arg-type]
    assert raised.value.errors[0]["field"] == "callback_url"


def test_an_empty_secret_is_callbacks_off() -> None:
    from taskcore.callbacks import webhook_secret
    from taskcore.settings import Settings

    assert webhook_secret(Settings(webhook_secret="")) is None  # type: ignore[arg-type]
    assert webhook_secret(Settings()) is None
    assert webhook_secret(Settings(webhook_secret="k")) == b"k"  # type: ignore[arg-type]
