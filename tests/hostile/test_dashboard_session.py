"""The dashboard's sign-in against a hostile browser or site (DESIGN A13), over HTTP: a sign-in
or sign-out or cancel without the CSRF token is refused and changes nothing; sign-out by GET
signs no one out; the cookie is a store session, not the token, and revoking the token
(``conveyor token revoke``) signs it out; ``Secure`` behind an https public URL; the security
headers on every answer."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from conveyor.server.app import server_app
from conveyor.server.gateway.settings import GatewaySettings
from conveyor.server.gateway.state import TOKEN_CACHE_S
from conveyor.server.store.base import Store
from tests.gateway.conftest import BASE, Tenant, deploy, finish, start

SIGNIN = "/dashboard/signin"
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def csrf_in(page: str) -> str:
    found = _CSRF.search(page)
    assert found, page
    return found.group(1)


async def signed_in(http: httpx.AsyncClient, token: str) -> httpx.Response:
    """Sign in as a browser does: fetch the form (its pre-session cookie and CSRF token), post."""
    form = await http.get(SIGNIN)
    assert form.status_code == 200
    answer = await http.post(SIGNIN, data={"token": token, "csrf": csrf_in(form.text)})
    assert answer.status_code == 303, answer.text
    return answer


async def session_count(store: Store) -> int:
    rows = await store.driver.read(  # type: ignore[attr-defined]
        lambda tx: tx.execute("SELECT COUNT(*) FROM dashboard_sessions")
    )
    return int(rows[0][0])


async def test_sign_in_without_or_with_a_wrong_csrf_token_is_refused(
    store: Store, http: httpx.AsyncClient, alice: Tenant
) -> None:
    # No form fetched: no pre-session cookie, no token.
    bare = await http.post(SIGNIN, data={"token": alice.token})
    # The form's cookie, but a made-up token (a forged cross-site form cannot read the real one).
    form = await http.get(SIGNIN)
    wrong = await http.post(SIGNIN, data={"token": alice.token, "csrf": "0" * 64})
    # A token that would fit another pre-session (the attacker's own) does not fit this one.
    async with httpx.AsyncClient(transport=http._transport, base_url=BASE) as attacker:
        theirs = csrf_in((await attacker.get(SIGNIN)).text)
    stolen = await http.post(SIGNIN, data={"token": alice.token, "csrf": theirs})
    for refused in (bare, wrong, stolen):
        assert refused.status_code == 403
        assert "did not come from this dashboard" in refused.text
        assert "conveyor_session" not in refused.headers.get("set-cookie", "")
    assert await session_count(store) == 0
    assert (await http.get("/dashboard/")).status_code == 303  # still signed out
    # The refusal shows a fresh form, and that one signs in.
    answer = await http.post(SIGNIN, data={"token": alice.token, "csrf": csrf_in(form.text)})
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/"
    assert (await http.get("/dashboard/")).status_code == 200


async def test_the_cookie_is_a_session_not_the_token(
    store: Store, http: httpx.AsyncClient, alice: Tenant
) -> None:
    await signed_in(http, alice.token)
    session = http.cookies.get("conveyor_session")
    assert session and session != alice.token and alice.token not in str(http.cookies)
    assert "conveyor_token" not in http.cookies
    assert await session_count(store) == 1
    # The raw token as a cookie (as earlier versions kept it) signs nothing in.
    async with httpx.AsyncClient(
        transport=http._transport, base_url=BASE,
        cookies={"conveyor_session": alice.token, "conveyor_token": alice.token},
    ) as raw:
        assert (await raw.get("/dashboard/")).status_code == 303
    # And the session is no API credential.
    assert (await http.get("/v2/task/", headers={"Authorization": f"Bearer {session}"})
            ).status_code == 401


async def test_sign_out_is_a_post_with_the_csrf_token(
    store: Store, http: httpx.AsyncClient, alice: Tenant
) -> None:
    await signed_in(http, alice.token)
    page = await http.get("/dashboard/")
    assert page.status_code == 200
    # A link, an <img> or a prefetch cannot sign anyone out.
    assert (await http.get("/dashboard/signout")).status_code == 405
    # A cross-site form posting without the token is refused.
    forged = await http.post("/dashboard/signout", data={"csrf": "f" * 64})
    assert forged.status_code == 403 and "nothing was done" in forged.text
    assert (await http.get("/dashboard/")).status_code == 200
    assert await session_count(store) == 1
    session = http.cookies["conveyor_session"]
    out = await http.post("/dashboard/signout", data={"csrf": csrf_in(page.text)})
    assert out.status_code == 303 and out.headers["location"] == SIGNIN
    assert await session_count(store) == 0  # deleted from the store, not only the cookie
    async with httpx.AsyncClient(transport=http._transport, base_url=BASE,
                                 cookies={"conveyor_session": session}) as replay:
        assert (await replay.get("/dashboard/")).status_code == 303


async def test_cancel_needs_the_sessions_csrf_header(
    http: httpx.AsyncClient, alice: Tenant
) -> None:
    await signed_in(http, alice.token)
    token = csrf_in((await http.get("/dashboard/")).text)
    body = {"task_ids": []}
    for headers in ({}, {"X-Conveyor-Dashboard": "1"}, {"X-Conveyor-CSRF": "0" * 64}):
        refused = await http.post("/dashboard/live/cancel", json=body, headers=headers)
        assert refused.status_code == 403 and "x-conveyor-csrf" in refused.json()["error"]
    ok = await http.post("/dashboard/live/cancel", json=body, headers={"X-Conveyor-CSRF": token})
    assert ok.status_code == 200 and ok.json()["cancelled"] == []


async def test_a_tasks_live_log_is_its_workspaces_only(
    store: Store, http: httpx.AsyncClient, alice: Tenant, mallory: Tenant
) -> None:
    stub = await deploy(store, alice, "q")
    task_id = (await http.post("/taskqueue/q", json={}, headers=alice.auth)).json()["task_id"]
    await finish(store, await start(store, stub))
    logs = f"/dashboard/live/tasks/{task_id}/logs"
    assert (await http.get(logs)).status_code == 401  # no session
    await signed_in(http, mallory.token)
    for path in (logs, "/dashboard/live/tasks/nosuch/logs"):
        foreign = await http.get(path)
        assert foreign.status_code == 404 and "unknown task" in foreign.json()["error"]
    assert (await http.get(f"/dashboard/tasks/{task_id}")).status_code == 404
    # Alice's own session gets the stream: the task has ended, so it ends at once.
    async with httpx.AsyncClient(transport=http._transport, base_url=BASE) as own:
        await signed_in(own, alice.token)
        answer = await own.get(logs)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert answer.text.endswith('event: end\ndata: {"status":"COMPLETE"}\n\n')


async def test_a_revoked_tokens_session_is_signed_out_and_the_api_refuses_it(
    store: Store, store_url: str, http: httpx.AsyncClient, alice: Tenant
) -> None:
    kept = await store.create_token(alice.workspace.id)
    await signed_in(http, alice.token)
    assert (await http.get("/dashboard/")).status_code == 200
    assert (await http.get("/v2/task/", headers=alice.auth)).status_code == 200
    async with httpx.AsyncClient(transport=http._transport, base_url=BASE) as other:
        await signed_in(other, kept)
        revoked = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "conveyor", "token", "revoke", alice.token,
             "--store", store_url],
            capture_output=True, text=True, timeout=60,
        )
        assert revoked.returncode == 0, revoked.stderr
        assert "revoked 1 token(s); signed out 1 dashboard session(s)" in revoked.stdout
        # The session made from it is signed out at once; the page goes to the sign-in form.
        assert (await http.get("/dashboard/")).status_code == 303
        assert (await http.post("/dashboard/live/cancel", json={"task_ids": []})
                ).status_code == 401
        # The session made from another token of the workspace is not.
        assert (await other.get("/dashboard/")).status_code == 200
    # The API: once the gateway's short token cache has passed.
    deadline = time.monotonic() + TOKEN_CACHE_S + 2
    while (await http.get("/v2/task/", headers=alice.auth)).status_code != 401:
        assert time.monotonic() < deadline, "the revoked token still authenticates"
        await asyncio.sleep(0.2)
    assert (await http.post("/taskqueue/q", json={}, headers=alice.auth)).status_code == 401
    # And it cannot sign in again.
    form = await http.get(SIGNIN)
    again = await http.post(SIGNIN, data={"token": alice.token, "csrf": csrf_in(form.text)})
    assert again.status_code == 401


@pytest.fixture
async def behind_tls(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway served over plain HTTP behind a TLS proxy: ``--public-url https://…``."""
    app = server_app(store, GatewaySettings(public_url="https://conveyor.example"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as client:
        yield client


def _cookies(response: httpx.Response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


async def test_cookies_are_secure_behind_an_https_public_url(
    behind_tls: httpx.AsyncClient, http: httpx.AsyncClient, alice: Tenant
) -> None:
    form = await behind_tls.get(SIGNIN)
    presession = _cookies(form)["conveyor_presession"]
    # httpx keeps Secure cookies for https only: post the form's cookie by hand.
    secret = presession.split(";")[0].split("=", 1)[1]
    behind_tls.cookies.set("conveyor_presession", secret)
    answer = await behind_tls.post(SIGNIN, data={"token": alice.token, "csrf": csrf_in(form.text)})
    assert answer.status_code == 303
    session = _cookies(answer)["conveyor_session"]
    for cookie in (presession, session):
        attributes = {a.strip().lower() for a in cookie.split(";")}
        assert {"secure", "httponly", "samesite=strict", "path=/dashboard"} <= attributes
    # Over plain HTTP with no https public URL: not Secure (the browser would drop it).
    plain = _cookies(await http.get(SIGNIN))["conveyor_presession"]
    assert "secure" not in {a.strip().lower() for a in plain.split(";")}


async def test_every_answer_has_the_security_headers(
    http: httpx.AsyncClient, alice: Tenant
) -> None:
    await signed_in(http, alice.token)
    answers = [
        await http.get(SIGNIN),
        await http.get("/dashboard/"),
        await http.get("/dashboard/tasks"),
        await http.get("/dashboard/tasks/nosuch"),
        await http.get("/dashboard/static/dashboard.js"),
        await http.get("/dashboard/signout"),  # 405
        await http.get("/v2/task/"),  # 401 JSON
        await http.get("/nosuch"),  # 404
        await http.get("/healthz"),
        await http.post("/taskqueue/q", content=b"x" * (70 * 1024)),  # 413 before routing
        await http.get("/docs"),
    ]
    for answer in answers:
        assert answer.status_code < 500
        assert answer.headers["x-frame-options"] == "DENY", answer.url
        assert answer.headers["x-content-type-options"] == "nosniff", answer.url
        policy = answer.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert len(answer.headers.get_list("content-security-policy")) == 1
    # /docs runs one inline start-up script, allowed by its hash only.
    assert re.search(r"script-src 'self' 'sha256-[A-Za-z0-9+/=]+'",
                     answers[-1].headers["content-security-policy"])
