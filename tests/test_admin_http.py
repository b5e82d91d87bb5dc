"""Admin API transport (node.admin) over real TCP sockets on 127.0.0.1, port 0.

Each test runs its own server inside ``asyncio.run``.  Raw requests are written byte for
byte so malformed input reaches the parser exactly as sent; the clients are tested against
the same server.  A handler that records its calls proves refused requests change nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.admin import (
    OPENMETRICS_CONTENT_TYPE,
    AdminCallError,
    AdminClient,
    AdminError,
    AdminRequest,
    AdminResponse,
    AdminServer,
    Handler,
    admin_call,
    metric_family,
    parse_request_head,
    render_openmetrics,
)

TOKEN = "s3cret-admin-token"
AUTH = f"Authorization: Bearer {TOKEN}\r\n".encode()
METRICS = render_openmetrics([metric_family("troon_up", "gauge", "Node is up", [({}, 1)])])

Response = tuple[int, dict[str, str], bytes]


@pytest.fixture(autouse=True)
def no_asyncio_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Unretrieved task exceptions, unclosed transports and callback errors fail the test."""
    yield
    noise = [r.getMessage() for r in caplog.get_records("call") if r.name == "asyncio"]
    assert noise == []


class Recorder:
    """A state-changing handler: every call it receives is kept."""

    def __init__(self) -> None:
        self.calls: list[AdminRequest] = []

    async def __call__(self, request: AdminRequest) -> AdminResponse:
        self.calls.append(request)
        return AdminResponse(body={"recorded": len(self.calls)})


async def status(request: AdminRequest) -> AdminResponse:
    return AdminResponse(body={"ok": True, "query": request.query, "z": 1, "a": 2})


async def echo(request: AdminRequest) -> AdminResponse:
    return AdminResponse(body={"got": request.json()})


async def refuse(request: AdminRequest) -> AdminResponse:
    raise AdminError("chunk name must be 64 hex digits")


async def missing(request: AdminRequest) -> AdminResponse:
    raise AdminError("no such chunk", status=404)


async def crash(request: AdminRequest) -> AdminResponse:
    raise RuntimeError("boom")


async def metrics(request: AdminRequest) -> AdminResponse:
    return AdminResponse(body=METRICS, content_type=OPENMETRICS_CONTENT_TYPE)


async def text(request: AdminRequest) -> AdminResponse:
    return AdminResponse(body="plain words")


def routes(recorder: Recorder) -> dict[tuple[str, str], Handler]:
    return {
        ("GET", "/status"): status,
        ("POST", "/echo"): echo,
        ("GET", "/refuse"): refuse,
        ("GET", "/missing"): missing,
        ("GET", "/crash"): crash,
        ("GET", "/metrics"): metrics,
        ("GET", "/text"): text,
        ("POST", "/record"): recorder,
        ("DELETE", "/record"): recorder,
    }


@asynccontextmanager
async def serving(recorder: Recorder | None = None, **limits: Any) -> AsyncIterator[AdminServer]:
    server = AdminServer(TOKEN, routes(recorder or Recorder()), **limits)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def port_of(server: AdminServer) -> int:
    assert server._server is not None
    return int(server._server.sockets[0].getsockname()[1])


async def exchange(port: int, data: bytes, *, eof: bool = True) -> bytes:
    """Send raw bytes, optionally half-close, and read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        if eof:
            writer.write_eof()
        async with asyncio.timeout(30):
            return await reader.read(-1)
    finally:
        writer.close()
        await writer.wait_closed()


def parse_responses(data: bytes) -> list[Response]:
    """Split a byte stream into (status, headers, body) responses framed by Content-Length."""
    out = []
    while data:
        head, sep, data = data.partition(b"\r\n\r\n")
        assert sep, f"truncated response head: {head!r}"
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 ")
        headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        length = int(headers.get("content-length", "0"))
        out.append((int(lines[0].split(" ")[1]), headers, data[:length]))
        data = data[length:]
    return out


def request(method: str, target: str, body: bytes = b"", *, extra: bytes = AUTH) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + extra + b"\r\n" + body


async def one(port: int, data: bytes) -> Response:
    responses = parse_responses(await exchange(port, data))
    assert len(responses) == 1, responses
    return responses[0]


async def still_serving(port: int) -> None:
    code, _, body = await one(
        port, request("GET", "/status", extra=AUTH + b"Connection: close\r\n")
    )
    assert code == 200
    assert body.startswith(b'{"a":2,"ok":true')


def run(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(coro())


# --- authorised round trips ------------------------------------------------------------------


def test_get_and_post_round_trip_with_compact_sorted_json() -> None:
    async def main() -> None:
        async with serving() as server:
            port = port_of(server)
            code, headers, body = await one(port, request("GET", "/status?x=1"))
            assert code == 200
            assert headers["content-type"] == "application/json"
            assert headers["content-length"] == str(len(body))
            assert body == b'{"a":2,"ok":true,"query":{"x":"1"},"z":1}'
            code, _, body = await one(port, request("POST", "/echo", b'{"k": [1, 2.5, null]}'))
            assert (code, body) == (200, b'{"got":{"k":[1,2.5,null]}}')
            assert server.counters == {
                "requests": 2,
                "unauthorized": 0,
                "bad_requests": 0,
                "errors": 0,
            }

    run(main)


def test_path_and_query_are_percent_decoded_and_last_value_wins() -> None:
    async def main() -> None:
        async with serving() as server:
            target = "/st%61tus?a=1&a=2&b=x%20y&c=%E2%9C%93&empty="
            _, _, body = await one(port_of(server), request("GET", target))
            assert b'"query":{"a":"2","b":"x y","c":"\\u2713","empty":""}' in body

    run(main)


def test_text_and_openmetrics_bodies_keep_their_content_type() -> None:
    async def main() -> None:
        async with serving() as server:
            _, headers, body = await one(port_of(server), request("GET", "/metrics"))
            assert headers["content-type"] == OPENMETRICS_CONTENT_TYPE
            assert body.decode() == METRICS
            _, headers, body = await one(port_of(server), request("GET", "/text"))
            assert headers["content-type"] == "text/plain; charset=utf-8"
            assert body == b"plain words"

    run(main)


def test_bearer_scheme_is_case_insensitive() -> None:
    async def main() -> None:
        recorder = Recorder()
        async with serving(recorder) as server:
            auth = f"Authorization: bEaReR {TOKEN}\r\n".encode()
            code, _, _ = await one(port_of(server), request("POST", "/record", extra=auth))
            assert code == 200
            assert len(recorder.calls) == 1

    run(main)


# --- authentication --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [
        b"",
        b"Authorization: Bearer wrong\r\n",
        b"Authorization: Bearer \r\n",
        b"Authorization: Bearer " + TOKEN[:-1].encode() + b"\r\n",
        b"Authorization: Bearer " + TOKEN.encode() + b"x\r\n",
        b"Authorization: Basic " + TOKEN.encode() + b"\r\n",
        b"Authorization: " + TOKEN.encode() + b"\r\n",
        b"Authorization: Bearer \xe9\xff\r\n",
        b"X-Token: " + TOKEN.encode() + b"\r\n",
    ],
)
def test_missing_or_wrong_token_is_401_and_the_handler_never_runs(auth: bytes) -> None:
    async def main() -> None:
        recorder = Recorder()
        async with serving(recorder) as server:
            port = port_of(server)
            for method, path in [("POST", "/record"), ("DELETE", "/record"), ("GET", "/nope")]:
                code, headers, body = await one(port, request(method, path, b"{}", extra=auth))
                assert code == 401
                assert headers["www-authenticate"].startswith("Bearer")
                assert body == b'{"error":"missing or invalid bearer token"}'
            assert recorder.calls == []
            assert server.counters["unauthorized"] == 3
            with pytest.raises(AdminCallError) as info:
                await AdminClient("127.0.0.1", port, "wrong").post("/record", {"a": 1})
            assert info.value.status == 401
            assert recorder.calls == []

    run(main)


# --- routing and handler failures ------------------------------------------------------------


def test_unknown_path_is_404_and_wrong_method_is_405_with_allow() -> None:
    async def main() -> None:
        recorder = Recorder()
        async with serving(recorder) as server:
            port = port_of(server)
            code, _, body = await one(port, request("GET", "/nowhere"))
            assert (code, body) == (404, b'{"error":"no such path: /nowhere"}')
            code, headers, _ = await one(port, request("GET", "/record"))
            assert code == 405
            assert headers["allow"] == "DELETE, POST"
            code, _, _ = await one(port, request("POST", "/status"))
            assert code == 405
            assert recorder.calls == []

    run(main)


def test_handler_admin_error_is_400_and_may_choose_another_4xx() -> None:
    async def main() -> None:
        async with serving() as server:
            code, _, body = await one(port_of(server), request("GET", "/refuse"))
            assert (code, body) == (400, b'{"error":"chunk name must be 64 hex digits"}')
            code, _, body = await one(port_of(server), request("GET", "/missing"))
            assert (code, body) == (404, b'{"error":"no such chunk"}')
            code, _, body = await one(port_of(server), request("POST", "/echo", b"{nope"))
            assert (code, body) == (400, b'{"error":"body is not valid JSON"}')
            assert server.counters["bad_requests"] == 3

    run(main)


def test_handler_crash_is_500_logged_and_the_next_request_on_the_connection_works(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        async with serving() as server:
            data = request("GET", "/crash") + request("GET", "/status")
            (c1, _, b1), (c2, _, _) = parse_responses(await exchange(port_of(server), data))
            assert (c1, b1) == (500, b'{"error":"internal error: RuntimeError"}')
            assert c2 == 200
            assert server.counters["errors"] == 1
            await still_serving(port_of(server))

    with caplog.at_level(logging.ERROR, logger="node.admin"):
        run(main)
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in caplog.records)


@pytest.mark.parametrize(
    "body",
    [float("nan"), object(), {1: 2, "a": 1}],
    ids=["nan", "object", "mixed-keys"],
)
def test_unserialisable_handler_body_is_500(body: Any) -> None:
    async def bad(request: AdminRequest) -> AdminResponse:
        return AdminResponse(body=body)

    async def main() -> None:
        server = AdminServer(TOKEN, {("GET", "/bad"): bad})
        _, port = await server.start()
        try:
            code, _, _ = await one(port, request("GET", "/bad"))
            assert code == 500
            assert server.counters["errors"] == 1
        finally:
            await server.close()

    run(main)


def test_request_json_helper() -> None:
    assert AdminRequest("POST", "/", body=b'{"a": [1]}').json() == {"a": [1]}
    assert AdminRequest("POST", "/").json() is None
    for bad in [b"{", b"NaN", b"[Infinity]", b"\xff", b"[" * 100_000]:
        with pytest.raises(AdminError, match="body is not valid JSON"):
            AdminRequest("POST", "/", body=bad).json()


# --- bounded parsing -------------------------------------------------------------------------


def test_oversized_body_is_413_without_reading_it_and_the_handler_never_runs() -> None:
    async def main() -> None:
        recorder = Recorder()
        async with serving(recorder, max_body=16) as server:
            port = port_of(server)
            code, _, _ = await one(port, request("POST", "/record", b"x" * 16))
            assert code == 200
            code, headers, _ = await one(port, request("POST", "/record", b"x" * 17))
            assert (code, headers["connection"]) == (413, "close")
            head = b"POST /record HTTP/1.1\r\nContent-Length: 99999999999\r\n" + AUTH + b"\r\n"
            assert (await one(port, head))[0] == 413
            assert len(recorder.calls) == 1
            await still_serving(port)

    run(main)


def test_client_streaming_a_large_body_reads_413_not_a_reset() -> None:
    async def main() -> None:
        async with serving(max_body=1024) as server:
            client = AdminClient("127.0.0.1", port_of(server), TOKEN)
            with pytest.raises(AdminCallError) as info:
                await client.post("/echo", "x" * (4 << 20))
            assert info.value.status == 413

    run(main)


BAD_REQUESTS = [
    b"GARBAGE\r\n\r\n",
    b"\x00\xff\xfe\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET /status\r\n\r\n",
    b"GET /status HTTP/1.1 extra\r\n\r\n",
    b"GET  /status HTTP/1.1\r\n\r\n",
    b"GET status HTTP/1.1\r\n\r\n",
    b"GET * HTTP/1.1\r\n\r\n",
    b"GET /sta\x01tus HTTP/1.1\r\n\r\n",
    b"GET /status HTTP/2.0\r\n\r\n",
    b"GET /status HTTP/1.1x\r\n\r\n",
    b"GET /status http/1.1\r\n\r\n",
    b"G(T /status HTTP/1.1\r\n\r\n",
    b"GET /status HTTP/1.1\r\nno colon here\r\n\r\n",
    b"GET /status HTTP/1.1\r\n folded: line\r\n\r\n",
    b"GET /status HTTP/1.1\r\nName : space before colon\r\n\r\n",
    b"GET /status HTTP/1.1\r\nX: a\x00b\r\n\r\n",
    b"GET /status HTTP/1.1\r\nX: a\nb\r\n\r\n",
    b"GET /status HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"GET /status HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
    b"GET /status HTTP/1.1\r\nContent-Length: 1_0\r\n\r\n",
    b"GET /status HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
    b"GET /status HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n",
    b"GET /status HTTP/1.1\r\nHost: x",  # truncated head
    b"GET /status HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",  # truncated body
]


@pytest.mark.parametrize("data", BAD_REQUESTS)
def test_malformed_request_is_400_closes_the_connection_and_the_server_keeps_serving(
    data: bytes,
) -> None:
    async def main() -> None:
        recorder = Recorder()
        async with serving(recorder) as server:
            port = port_of(server)
            code, headers, body = await one(port, data)
            assert code == 400
            assert headers["connection"] == "close"
            assert body.startswith(b'{"error":')
            assert server.counters["bad_requests"] == 1
            await still_serving(port)
            assert recorder.calls == []

    run(main)


def test_malformed_request_after_a_good_one_on_the_same_connection() -> None:
    async def main() -> None:
        async with serving() as server:
            data = request("GET", "/status") + b"BROKEN\r\n\r\n" + request("GET", "/status")
            codes = [c for c, _, _ in parse_responses(await exchange(port_of(server), data))]
            assert codes == [200, 400]

    run(main)


@pytest.mark.parametrize("encoding", [b"chunked", b"gzip, chunked", b"identity"])
def test_transfer_encoding_is_refused_with_411(encoding: bytes) -> None:
    async def main() -> None:
        recorder = Recorder()
        async with serving(recorder) as server:
            data = (
                b"POST /record HTTP/1.1\r\nTransfer-Encoding: " + encoding + b"\r\n" + AUTH
            ) + b"\r\n5\r\nhello\r\n0\r\n\r\n"
            code, _, body = await one(port_of(server), data)
            assert code == 411
            assert b"Content-Length" in body
            assert recorder.calls == []
            await still_serving(port_of(server))

    run(main)


@pytest.mark.parametrize("terminated", [True, False])
def test_oversized_head_is_431(terminated: bool) -> None:
    async def main() -> None:
        async with serving(max_header=256) as server:
            data = b"GET /status HTTP/1.1\r\nX-Pad: " + b"a" * 300
            code, _, _ = await one(port_of(server), data + (b"\r\n\r\n" if terminated else b""))
            assert code == 431
            await still_serving(port_of(server))

    run(main)


def test_too_many_header_fields_is_431() -> None:
    async def main() -> None:
        async with serving() as server:
            data = b"GET /status HTTP/1.1\r\n" + b"X: y\r\n" * 101 + AUTH + b"\r\n"
            assert (await one(port_of(server), data))[0] == 431

    run(main)


@pytest.mark.parametrize(
    "partial",
    [b"GET /status HTTP/1.1\r\nHost:", b"POST /echo HTTP/1.1\r\nContent-Length: 9\r\n\r\n{"],
    ids=["head", "body"],
)
def test_slow_client_is_cut_with_408(partial: bytes) -> None:
    async def main() -> None:
        async with serving(request_timeout=0.3) as server:
            code, headers, _ = await one(port_of(server), partial)  # no EOF sent
            assert (code, headers["connection"]) == (408, "close")
            await still_serving(port_of(server))

    async def one(port: int, data: bytes) -> Response:
        (response,) = parse_responses(await exchange(port, data, eof=False))
        return response

    run(main)


def test_idle_keep_alive_connection_is_closed_quietly() -> None:
    async def main() -> None:
        async with serving(request_timeout=0.3) as server:
            data = await exchange(port_of(server), request("GET", "/status"), eof=False)
            assert [c for c, _, _ in parse_responses(data)] == [200]
            assert server.counters["bad_requests"] == 0

    run(main)


# --- connection management -------------------------------------------------------------------


def test_keep_alive_serves_sequential_requests_on_one_connection() -> None:
    async def main() -> None:
        async with serving() as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
            try:
                for n in range(3):
                    writer.write(request("POST", "/echo", str(n).encode()))
                    head = await reader.readuntil(b"\r\n\r\n")
                    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
                    assert b"connection: close" not in head.lower()
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    assert await reader.readexactly(length) == b'{"got":%d}' % n
            finally:
                writer.close()
                await writer.wait_closed()

    run(main)


def test_pipelined_requests_are_answered_in_order_and_connection_close_is_honoured() -> None:
    async def main() -> None:
        async with serving() as server:
            data = (
                request("POST", "/echo", b"1")
                + request("POST", "/echo", b"2", extra=AUTH + b"Connection: close\r\n")
                + request("POST", "/echo", b"3")
            )
            responses = parse_responses(await exchange(port_of(server), data, eof=False))
            assert [b for _, _, b in responses] == [b'{"got":1}', b'{"got":2}']
            assert responses[1][1]["connection"] == "close"

    run(main)


@pytest.mark.parametrize(("connection", "persistent"), [(b"", False), (b"keep-alive", True)])
def test_http_1_0_closes_unless_keep_alive(connection: bytes, persistent: bool) -> None:
    async def main() -> None:
        async with serving() as server:
            req = b"GET /status HTTP/1.0\r\n" + AUTH + b"Connection: " + connection + b"\r\n\r\n"
            data = await exchange(port_of(server), req + req, eof=True)
            assert len(parse_responses(data)) == (2 if persistent else 1)

    run(main)


def test_expect_100_continue_gets_an_interim_response() -> None:
    async def main() -> None:
        async with serving() as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
            try:
                head = b"POST /echo HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n"
                writer.write(head + AUTH + b"\r\n")
                assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
                writer.write(b"true")
                writer.write_eof()
                (response,) = parse_responses(await reader.read(-1))
                assert response[0] == 200
                assert response[2] == b'{"got":true}'
            finally:
                writer.close()
                await writer.wait_closed()

    run(main)


def test_close_ends_open_connections_and_refuses_new_ones() -> None:
    async def main() -> None:
        server = AdminServer(TOKEN, routes(Recorder()))
        _, port = await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("GET", "/status"))
        await reader.readuntil(b'"z":1}')  # the connection is served and kept alive
        writer.write(b"GET /status HTTP/1.1\r\n")  # a request in progress
        await writer.drain()
        await server.close()
        await server.close()  # idempotent
        try:
            # FIN, or a reset if the server had not yet read the partial request from the kernel
            with contextlib.suppress(ConnectionResetError):
                assert await reader.read(-1) == b""
        finally:
            writer.close()
            with contextlib.suppress(ConnectionResetError):
                await writer.wait_closed()
        with pytest.raises(AdminCallError):
            await AdminClient("127.0.0.1", port, TOKEN).get("/status")

    run(main)


def test_close_cancels_an_in_flight_handler() -> None:
    started = asyncio.Event()
    finished: list[str] = []

    async def forever(request: AdminRequest) -> AdminResponse:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            finished.append("cancelled")
        return AdminResponse()

    async def main() -> None:
        server = AdminServer(TOKEN, {("GET", "/forever"): forever})
        _, port = await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request("GET", "/forever"))
            await started.wait()
            await server.close()
            assert finished == ["cancelled"]
            assert await reader.read(-1) == b""
        finally:
            writer.close()
            await writer.wait_closed()

    run(main)


def test_constructor_rejects_empty_token() -> None:
    with pytest.raises(ValueError, match="token"):
        AdminServer("", {})
    with pytest.raises(ValueError, match="token"):
        AdminClient("127.0.0.1", 1, "a\r\nX-Injected: 1")


# --- clients ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_admin_client_round_trips_and_errors() -> None:
    async def main() -> None:
        async with serving() as server:
            client = AdminClient("127.0.0.1", port_of(server), TOKEN)
            assert (await client.get("/status", a="1 2", b="é"))["query"] == {"a": "1 2", "b": "é"}
            assert await client.post("/echo", {"n": [1, 2]}) == {"got": {"n": [1, 2]}}
            assert await client.post("/echo") == {"got": None}
            assert await client.get_text("/metrics") == METRICS
            with pytest.raises(AdminCallError) as info:
                await client.get("/text")  # not JSON
            assert info.value.status == 200
            assert "not valid JSON" in info.value.message
            with pytest.raises(AdminCallError) as info:
                await client.get("/missing")
            assert (info.value.status, info.value.message) == (404, "no such chunk")
            with pytest.raises(AdminCallError) as info:
                await client.get("/status/../nowhere")
            assert info.value.status == 404

    run(main)


def test_admin_client_connection_refused_and_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)  # never answers; ends when the client gives up and closes
        writer.close()

    async def main() -> None:
        with pytest.raises(AdminCallError) as info:
            await AdminClient("127.0.0.1", free_port(), TOKEN).get("/status")
        assert info.value.status == 0
        mute = await asyncio.start_server(silent, "127.0.0.1", 0)
        try:
            port = mute.sockets[0].getsockname()[1]
            with pytest.raises(AdminCallError, match="timed out") as info:
                await AdminClient("127.0.0.1", port, TOKEN, timeout=0.2).get("/status")
            assert info.value.status == 0
        finally:
            mute.close()
            await mute.wait_closed()

    run(main)


def test_admin_call_blocking_round_trips_and_errors() -> None:
    async def main() -> None:
        async with serving() as server:
            port = port_of(server)

            def call(method: str, path: str, body: Any = None, token: str = TOKEN) -> Any:
                return admin_call("127.0.0.1", port, token, method, path, body, timeout=5.0)

            got = await asyncio.to_thread(call, "GET", "/status?q=%2F")
            assert got["query"] == {"q": "/"}
            assert await asyncio.to_thread(call, "POST", "/echo", [1, "x"]) == {"got": [1, "x"]}
            assert await asyncio.to_thread(call, "POST", "/echo") == {"got": None}
            assert await asyncio.to_thread(call, "GET", "/metrics") == METRICS
            cases: list[tuple[tuple[Any, ...], int]] = [
                (("GET", "/status", None, "wrong"), 401),
                (("GET", "/nowhere"), 404),
                (("PUT", "/status"), 405),
                (("GET", "/crash"), 500),
            ]
            for args, code in cases:
                with pytest.raises(AdminCallError) as info:
                    await asyncio.to_thread(call, *args)
                assert info.value.status == code
        with pytest.raises(AdminCallError) as info:
            await asyncio.to_thread(admin_call, "127.0.0.1", free_port(), TOKEN, "GET", "/")
        assert info.value.status == 0

    run(main)


# --- any bytes -------------------------------------------------------------------------------

FRAGMENTS = [
    b"GET ",
    b"POST ",
    b"/status",
    b"/record",
    b"?a=%zz&b",
    b" HTTP/1.1",
    b" HTTP/1.0",
    b"\r\n",
    b"\n",
    b"\r\n\r\n",
    b"Content-Length: 3\r\n",
    b"Content-Length: 99999999999999999999\r\n",
    b"Content-Length: 2000000\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Connection: close\r\n",
    b"Expect: 100-continue\r\n",
    b"Authorization: Bearer nope\r\n",
    b": \t",
    b"\x00",
    b"\xff",
    b"{}",
]
HEADER_LINES = [f for f in FRAGMENTS if f.endswith(b"\r\n") and b": " in f]


def mostly(valid: list[bytes], garbage: int) -> st.SearchStrategy[bytes]:
    """Nine times in ten one of ``valid``, else up to ``garbage`` arbitrary bytes."""
    choice = st.tuples(st.integers(0, 9), st.sampled_from(valid), st.binary(max_size=garbage))
    return choice.map(lambda c: c[2] if c[0] == 0 else c[1])


REQUEST_SHAPED = st.builds(
    lambda method, target, version, fields, body: (
        b"%s %s %s\r\n%s\r\n%s" % (method, target, version, b"".join(fields), body)
    ),
    mostly([b"GET", b"POST", b"DELETE", b"G\x00T"], 4),
    mostly([b"/status", b"/record", b"/nowhere", b"/%zz?a=%ff&a"], 8),
    mostly([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/9.9"], 8),
    st.lists(mostly(HEADER_LINES, 12), max_size=4),
    st.just(b"") | st.binary(max_size=8),
)
ANY_REQUEST = st.one_of(
    st.binary(max_size=400),
    st.lists(st.sampled_from(FRAGMENTS) | st.binary(max_size=8), max_size=24).map(b"".join),
    REQUEST_SHAPED,
)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=ANY_REQUEST)
def test_any_bytes_never_crash_the_server_or_reach_a_handler(data: bytes) -> None:
    async def main() -> None:
        recorder = Recorder()
        async with serving(recorder, request_timeout=5.0) as server:
            port = port_of(server)
            responses = parse_responses(await exchange(port, data))
            # only refusals, perhaps after a 100 Continue interim response to "Expect"
            assert all(c == 100 or 400 <= c <= 499 for c, _, _ in responses), responses
            await still_serving(port)
            assert recorder.calls == []
            assert server.counters["errors"] == 0

    run(main)


def test_parse_request_head_whole_and_with_leading_blank_lines() -> None:
    head = b"\r\nGET /a?b=c HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2"
    assert parse_request_head(head) == (
        "GET",
        "/a?b=c",
        (1, 1),
        {"host": "h", "x-a": "1, 2"},
    )


# --- OpenMetrics -----------------------------------------------------------------------------


def test_counter_family_gets_total_suffix_and_sorted_escaped_labels() -> None:
    text = metric_family(
        "troon_transport_packets_sent",
        "counter",
        "Packets sent",
        [({"peer": "x"}, 3), ({"peer": 'a"b\\c\nd', "dir": "out"}, 1.5)],
    )
    assert text == (
        "# TYPE troon_transport_packets_sent counter\n"
        "# HELP troon_transport_packets_sent Packets sent\n"
        'troon_transport_packets_sent_total{peer="x"} 3\n'
        'troon_transport_packets_sent_total{dir="out",peer="a\\"b\\\\c\\nd"} 1.5\n'
    )
    assert metric_family("x_total", "counter", "h", [({}, 0)]).startswith("# TYPE x counter\n")


def test_gauge_family_values_and_full_exposition() -> None:
    gauge = metric_family(
        "troon_routing_peers",
        "gauge",
        'Peers "known"\nnow \\ here',
        [
            ({}, 12),
            ({"bucket": "3"}, float("nan")),
            ({"b": "1"}, float("-inf")),
            ({"b": "2"}, 1e-05),
        ],
    )
    assert gauge.splitlines() == [
        "# TYPE troon_routing_peers gauge",
        '# HELP troon_routing_peers Peers \\"known\\"\\nnow \\\\ here',
        "troon_routing_peers 12",
        'troon_routing_peers{bucket="3"} NaN',
        'troon_routing_peers{b="1"} -Inf',
        'troon_routing_peers{b="2"} 1e-05',
    ]
    counter = metric_family("c", "counter", "C", [])
    assert render_openmetrics([counter, gauge]) == counter + gauge + "# EOF\n"
    assert render_openmetrics([]) == "# EOF\n"


@pytest.mark.parametrize(
    ("name", "kind", "samples"),
    [
        ("bad-name", "gauge", []),
        ("1abc", "gauge", []),
        ("ok", "histogram", []),
        ("ok", "counter", [({}, -1)]),
        ("ok", "counter", [({}, float("nan"))]),
        ("ok", "gauge", [({"bad-label": "v"}, 1)]),
        ("ok", "gauge", [({"__reserved": "v"}, 1)]),
        ("ok", "gauge", [({"a": "1"}, 1), ({"a": "1"}, 2)]),
        ("ok", "gauge", [({}, True)]),
        ("ok", "gauge", [({}, "3")]),
    ],
)
def test_metric_family_rejects_invalid_input(
    name: str, kind: str, samples: list[tuple[dict[str, str], Any]]
) -> None:
    with pytest.raises(ValueError):
        metric_family(name, kind, "help", samples)
