"""The control helper on 127.0.0.1: what it measures, what it refuses, and its limits; and the
probe's client for it when the helper is slow, broken or gone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from probe.config import Settings
from probe.engine.runtime import Runtime
from probe.engine.schedule import measure_and_judge
from probe.helper.server import MAX_REQUEST_BYTES, ControlService
from probe.model import Target
from tests.conftest import free_port
from tests.loopback.conftest import page, settings

Start = Callable[..., Awaitable[int]]


@pytest.fixture
async def control(
    web_server: Start,
) -> Callable[..., Awaitable[tuple[str, ControlService]]]:
    async def start(
        concurrency: int = 4, token: str | None = None, public: tuple[str, ...] = ()
    ) -> tuple[str, ControlService]:
        service = ControlService(
            settings(public_ranges=public), token=token, concurrency=concurrency
        )
        port = await web_server(service.app())
        return f"http://127.0.0.1:{port}", service

    return start


async def post(
    url: str, body: bytes | dict[str, object], **headers: str
) -> tuple[int, dict[str, object]]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/api/v1/measure",
            data=data,
            headers={"content-type": "application/json", **headers},
        ) as resp,
    ):
        return resp.status, await resp.json()


async def counting_origin(web_server: Start, delay: float = 0.0) -> tuple[int, list[str]]:
    """A plain HTTP origin on 127.0.0.1 that records every request it gets."""
    seen: list[str] = []

    async def index(request: web.Request) -> web.Response:
        seen.append(request.path)
        await asyncio.sleep(delay)
        return web.Response(text="<title>origin</title>" + "x" * 2000, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    return await web_server(app), seen


async def test_measures_a_target_and_answers_in_the_probes_model(
    control, web_server: Start
) -> None:  # type: ignore[no-untyped-def]
    port, seen = await counting_origin(web_server)
    url, _ = await control(public=("127.0.0.0/8",))
    status, doc = await post(url, {"url": f"http://127.0.0.1:{port}/", "addresses": ["127.0.0.1"]})
    assert status == 200
    assert doc["version"] == 4
    m = doc["control"]["measurement"]  # type: ignore[index]
    assert m["http"]["status"] == 200 and m["http"]["title"] == "origin"
    assert [t["failure"] for t in m["tcp"]] == [None]
    assert seen == ["/"]


@pytest.mark.parametrize(
    ("location", "words"),
    [
        ("http://127.0.0.1:{port}/secret", "127.0.0.1: special-purpose, refused by the address"),
        ("http://[::ffff:127.0.0.1]:{port}/secret", "::ffff:7f00:1"),
        ("http://0.0.0.0:{port}/secret", "0.0.0.0: special-purpose, refused by the address"),
        ("http://user@127.0.0.1:{port}/secret", "127.0.0.1: special-purpose, refused by the"),
        # a legacy form a resolver would turn into 127.0.0.1 is no host at all: never resolved
        ("http://2130706433:{port}/secret", "'2130706433' is neither a host name nor an IPv4"),
        ("http://localhost:{port}/secret", "127.0.0.1: special-purpose, refused by the address"),
    ],
)
async def test_a_redirect_into_a_refused_destination_is_not_followed(
    control, web_server: Start, location: str, words: str
) -> None:  # type: ignore[no-untyped-def]
    """An allowed server (127.0.0.2) redirects the helper to its own loopback, in every address
    form: the secret page is never fetched, and the evidence says the hop was refused."""
    secret_port, seen = await counting_origin(web_server)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(location.format(port=secret_port))

    app = web.Application()
    app.router.add_get("/", redirect)
    attacker = await web_server(app, host="127.0.0.2")
    url, _ = await control(public=("127.0.0.2/32",))
    status, doc = await post(url, {"url": f"http://127.0.0.2:{attacker}/"})
    assert status == 200
    h = doc["control"]["measurement"]["http"]  # type: ignore[index]
    assert seen == []
    assert "origin" not in json.dumps(doc)  # the secret page's title
    assert h["hops"][0]["status"] == 302 and h["failure"] is not None
    assert words in h["error"]


async def test_refuses_private_destinations_by_default(control, web_server: Start) -> None:  # type: ignore[no-untyped-def]
    """An address literal is refused outright; a name that resolves to one is never contacted."""
    port, seen = await counting_origin(web_server)
    url, _ = await control()
    status, doc = await post(url, {"url": f"http://127.0.0.1:{port}/"})
    assert status == 403
    assert "special-purpose" in str(doc["error"])
    status, doc = await post(url, {"url": f"http://localhost:{port}/", "addresses": ["10.1.2.3"]})
    assert status == 200
    m = doc["control"]["measurement"]  # type: ignore[index]
    assert m["tcp"] == [] and m["http"] is None
    assert any("not contacted" in n and "10.1.2.3" in n for n in m["notes"])
    assert seen == []


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"not json", 400, "Expecting value"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"url": 5}', 400, "'url' must be a string"),
        (b'{"url": "ftp://x.example/"}', 400, "not an http(s) URL"),
        (b'{"url": "https://x.example/", "addresses": ["nonsense"]}', 400, "nonsense"),
        (
            b'{"url": "https://x.example/", "addresses": '
            + json.dumps(["192.0.2.1"] * 17).encode()
            + b"}",
            400,
            "at most 16",
        ),
        (
            b'{"url": "https://x.example/", "pad": "' + b"x" * MAX_REQUEST_BYTES + b'"}',
            413,
            "larger",
        ),
    ],
)
async def test_malformed_or_oversized_requests_get_a_4xx(
    control, body: bytes, status: int, words: str
) -> None:  # type: ignore[no-untyped-def]
    url, _ = await control()
    got, doc = await post(url, body)
    assert got == status
    assert words in str(doc["error"])


async def test_requests_of_another_version_with_unknown_fields_are_answered(
    control, web_server: Start
) -> None:  # type: ignore[no-untyped-def]
    """A fleet of mixed versions keeps working: version 1 (no deadline) and a newer request
    with fields this helper does not know are both measured."""
    port, seen = await counting_origin(web_server)
    url, _ = await control(public=("127.0.0.0/8",))
    target = f"http://127.0.0.1:{port}/"
    old_status, old = await post(url, {"url": target})
    new_status, new = await post(url, {"version": 9, "url": target, "hops": [1], "quic": True})
    assert (old_status, new_status) == (200, 200)
    for doc in (old, new):
        assert doc["control"]["measurement"]["http"]["status"] == 200  # type: ignore[index]
    assert seen == ["/", "/"]


async def test_token_is_required_when_set(control) -> None:  # type: ignore[no-untyped-def]
    url, _ = await control(token="s3cret")
    status, _ = await post(url, {"url": "https://x.example/"})
    assert status == 401
    status, _ = await post(url, {"url": "http://10.0.0.1/"}, Authorization="Bearer s3cret")
    assert status == 403  # past the token check


async def test_holds_its_concurrency_limit_under_a_burst(control, web_server: Start) -> None:  # type: ignore[no-untyped-def]
    port, seen = await counting_origin(web_server, delay=0.2)
    url, service = await control(concurrency=2, public=("127.0.0.0/8",))
    body = {"url": f"http://127.0.0.1:{port}/"}
    statuses = await asyncio.gather(*(post(url, body) for _ in range(12)))
    assert [s for s, _ in statuses] == [200] * 12
    assert service.max_in_flight == 2
    assert len(seen) == 12
    async with aiohttp.ClientSession() as session, session.get(f"{url}/api/v1") as resp:
        assert (await resp.json())["max_in_flight"] == 2


async def test_too_many_waiting_get_503(control, web_server: Start) -> None:  # type: ignore[no-untyped-def]
    port, _ = await counting_origin(web_server, delay=0.5)
    url, _ = await control(concurrency=1, public=("127.0.0.0/8",))
    body = {"url": f"http://127.0.0.1:{port}/"}
    statuses = [s for s, _ in await asyncio.gather(*(post(url, body) for _ in range(12)))]
    assert statuses.count(503) >= 1 and statuses.count(200) >= 8


async def _judged(target: str, **kw: object) -> dict[str, object]:
    rt = await Runtime.open(
        Settings(**{**dict(timeout=2.0, dns_window=0.1, throughput_window=1.0, retries=0), **kw})
    )  # type: ignore[arg-type]
    try:
        return (await measure_and_judge(Target.parse(target), rt)).to_json()
    finally:
        await rt.close()


async def test_a_dead_control_makes_failures_inconclusive_with_the_reason(
    web_server: Start,
) -> None:
    dead, closed = free_port(), free_port()
    r = await _judged(f"http://127.0.0.1:{closed}/", control=f"http://127.0.0.1:{dead}")
    assert r["verdict"] == "inconclusive"
    assert "control helper did not answer" in str(r["explanation"])
    assert "attempt 2" in str(r["evidence"]["control"]["error"])  # type: ignore[index]


async def test_a_control_answering_garbage_is_not_believed(web_server: Start) -> None:
    async def garbage(request: web.Request) -> web.Response:
        return web.Response(text='{"version": 1, "control": {"measurement": {"tcp": 5}}}')

    app = web.Application()
    app.router.add_post("/api/v1/measure", garbage)
    port = await web_server(app)
    origin = await web_server(page("fine"))
    r = await _judged(f"http://127.0.0.1:{origin}/", control=f"http://127.0.0.1:{port}")
    assert r["verdict"] == "accessible"  # the page loads: no control needed for that
    assert "unusable answer" in str(r["evidence"]["control"]["error"])  # type: ignore[index]
