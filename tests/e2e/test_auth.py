"""API keys on the real API process: 401 without a valid key, 403 without the scope, probes open,
the development profile open (and loud about it), and no key or password ever in a log line."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_API_KEY
from tests.e2e._helpers import TASKS, assert_problem, submit, wait_for_status
from tests.e2e.conftest import BIN, CLOSED_PORT, Stack

pytestmark = pytest.mark.e2e

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
# Every /api/v1 operation, the scope it needs, and a request that passes auth (its status then is not 401/403).
OPERATIONS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("POST", TASKS, "tasks:write", {"json": {"task_type": "test", "payload": {"message": "auth"}}}),
    ("GET", TASKS, "tasks:read", {}),
    ("GET", f"{TASKS}/{UNKNOWN_ID}", "tasks:read", {}),
    ("POST", f"{TASKS}/{UNKNOWN_ID}/cancel", "tasks:write", {}),
    ("POST", f"{TASKS}/{UNKNOWN_ID}/retry", "tasks:write", {}),
    ("GET", "/api/v1/task-types", "tasks:read", {}),
    ("GET", "/api/v1/queue", "tasks:read", {}),
]


def keygen(name: str, scopes: str) -> tuple[str, dict[str, Any]]:
    """Mint a key with the real CLI; return the key and its TASKFLOW_API_KEYS entry."""
    out = subprocess.run(
        [str(BIN / "taskflow-api"), "keygen", "--name", name, "--scopes", scopes, "--json"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    minted = json.loads(out.stdout)
    return minted["key"], minted["entry"]


def read_log(stack: Stack, name: str) -> str:
    return (stack.logs / f"{name}.log").read_text(errors="replace")


def assert_unauthorized(response: httpx.Response, *, invalid_token: bool) -> None:
    body = assert_problem(response, 401)
    assert body["type"].endswith("unauthorized"), body
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer"), challenge
    assert ('error="invalid_token"' in challenge) is invalid_token, challenge


async def test_every_v1_operation_needs_a_key(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as anonymous:
        for method, path, _scope, request in OPERATIONS:
            response = await anonymous.request(method, path, **request)
            assert_unauthorized(response, invalid_token=False)
            assert "Bearer" in response.json()["detail"]


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {TEST_API_KEY}x", "Bearer tf_nobody", f"Basic {TEST_API_KEY}", "Bearer", TEST_API_KEY, "Token abc"],
)
async def test_a_wrong_key_or_scheme_is_401_and_stores_nothing(stack: Stack, authorization: str) -> None:
    marker = uuid.uuid4().hex
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
        response = await client.post(
            TASKS,
            json={"task_type": "test", "payload": {"marker": marker}},
            headers={"Authorization": authorization},
        )
        assert_unauthorized(response, invalid_token=True)
        assert TEST_API_KEY not in response.text
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=10) as api:
        listed = (await api.get(TASKS, params={"task_type": "test", "limit": 100})).json()["items"]
        assert all(t["payload"].get("marker") != marker for t in listed)


async def test_probes_and_openapi_stay_open(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as anonymous:
        for path in ("/health", "/ready", "/metrics", "/openapi.json"):
            assert (await anonymous.get(path)).status_code == 200, path
        spec = (await anonymous.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["ApiKey"]["description"],
    }
    for method, path, _scope, _request in OPERATIONS:
        template = path.replace(UNKNOWN_ID, "{task_id}")
        operation = spec["paths"][template][method.lower()]
        assert operation["security"] == [{"ApiKey": []}], (method, path)
        assert {"401", "403"} <= set(operation["responses"]), (method, path)
    assert "security" not in spec["paths"]["/health"]["get"]


async def test_each_scope_allows_exactly_its_operations(stack: Stack) -> None:
    keys = {scope: keygen(f"only-{scope.replace(':', '-')}", scope) for scope in ("tasks:read", "tasks:write")}
    admin_key, admin_entry = keygen("operator", "admin")
    entries = [entry for _key, entry in keys.values()] + [admin_entry]
    with stack.extra_api("api-scopes", TASKFLOW_API_KEYS=json.dumps(entries)) as url:
        for held, (raw_key, _entry) in [*keys.items(), ("admin", (admin_key, admin_entry))]:
            async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {raw_key}"}) as client:
                for method, path, needed, request in OPERATIONS:
                    response = await client.request(method, path, **request)
                    if held in (needed, "admin"):
                        assert response.status_code not in (401, 403), (held, method, path, response.text)
                    else:
                        body = assert_problem(response, 403)
                        assert body["type"].endswith("forbidden")
                        assert needed in body["detail"], body
                        assert raw_key not in response.text
        # a key minted for write can submit and the read key can then see the task run
        write_key, read_key = keys["tasks:write"][0], keys["tasks:read"][0]
        async with (
            httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {write_key}"}) as writer,
            httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {read_key}"}) as reader,
        ):
            created = await submit(writer, "test", {"message": "scoped"})
            done = await wait_for_status(reader, created["id"], "succeeded")
            assert done["result"]["echo"] == {"message": "scoped"}
    log = read_log(stack, "api-scopes")
    assert "authentication on" in log
    for raw_key in (admin_key, *(k for k, _ in keys.values())):
        assert raw_key not in log


async def test_development_profile_runs_open_and_says_so_loudly(stack: Stack) -> None:
    with stack.extra_api("api-dev", TASKFLOW_ENV="development", TASKFLOW_API_KEYS="[]") as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as anonymous:
            created = await submit(anonymous, "test", {"message": "open"})
            assert (await anonymous.get(f"{TASKS}/{created['id']}")).status_code == 200
    assert "AUTHENTICATION IS OFF" in read_log(stack, "api-dev")


async def test_auth_can_be_forced_on_in_development(stack: Stack) -> None:
    """(Forced off outside development: tests/unit/test_auth.py::test_auth_is_on_by_default_outside_development.)"""
    with stack.extra_api("api-dev-locked", TASKFLOW_ENV="development", TASKFLOW_AUTH_ENABLED="true") as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as anonymous:
            assert_unauthorized(await anonymous.get(TASKS), invalid_token=False)
        async with httpx.AsyncClient(base_url=url, headers=stack.headers, timeout=10) as api:
            assert (await api.get(TASKS)).status_code == 200
    assert "AUTHENTICATION IS OFF" not in read_log(stack, "api-dev-locked")


async def test_no_key_or_password_reaches_a_log_line_or_an_error(stack: Stack, tmp_path: Path) -> None:
    """DEBUG logging, a valid key, a wrong key, a refused scope, and dependencies with passwords in
    their URLs that are down (so their errors get logged): none of those secrets shows anywhere."""
    read_key, read_entry = keygen("reader", "tasks:read")
    entries = [read_entry, *json.loads(stack.env["TASKFLOW_API_KEYS"])]
    wrong_key = "tf_" + uuid.uuid4().hex * 2
    db_password, redis_password = "pg-" + uuid.uuid4().hex, "rd-" + uuid.uuid4().hex
    with stack.extra_api(
        "api-secrets",
        TASKFLOW_LOG_LEVEL="DEBUG",
        TASKFLOW_API_KEYS=json.dumps(entries),
        TASKFLOW_DATABASE_URL=f"postgresql://postgres:{db_password}@127.0.0.1:{CLOSED_PORT}/taskflow",
        TASKFLOW_REDIS_URL=f"redis://:{redis_password}@127.0.0.1:{CLOSED_PORT}/0",
    ) as url:
        bodies = []
        async with httpx.AsyncClient(base_url=url, timeout=15) as client:
            for key in (TEST_API_KEY, read_key, wrong_key):
                headers = {"Authorization": f"Bearer {key}"}
                for method, path, _scope, request in OPERATIONS:
                    bodies.append((await client.request(method, path, headers=headers, **request)).text)
            ready = await client.get("/ready")
            assert ready.status_code == 503
            bodies.append(ready.text)
    log = read_log(stack, "api-secrets")
    assert "postgresql unavailable" in log, log[-2000:]  # the failures were logged (once per cause)...
    for secret in (TEST_API_KEY, read_key, wrong_key, db_password, redis_password):
        assert secret not in log  # ...without a secret in them
        assert all(secret not in body for body in bodies)


def test_a_bad_setting_is_refused_without_echoing_the_password() -> None:
    password = "pw-" + uuid.uuid4().hex
    env = {"PATH": "/usr/bin:/bin", "TASKFLOW_DATABASE_URL": f"mysql://root:{password}@db/x"}
    out = subprocess.run([str(BIN / "taskflow-api")], env=env, capture_output=True, timeout=30, check=False)
    assert out.returncode != 0
    assert b"database_url" in out.stderr
    assert password.encode() not in out.stdout + out.stderr
