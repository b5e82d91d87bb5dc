"""Admin API transport: a small authenticated HTTP/1.1 JSON server, its clients, OpenMetrics text.

The orchestrator and the console reach a node only through this API (DESIGN.md section 1).

Invariants:
- Every request is parsed through one bounded buffer per connection: the request line plus the
  headers fit in ``max_header`` bytes, a body in ``max_body`` bytes and is framed by
  Content-Length only (RFC 9112 section 6; transfer codings are refused with 411).  A whole
  request must arrive within ``request_timeout`` seconds, else 408 and the connection is cut.
- Every malformed input raises :class:`AdminError`, which becomes a 4xx response; no input
  from a peer ends the server.  After a framing error the connection is closed, because the
  byte stream can no longer be trusted.
- A handler runs only for a request carrying ``Authorization: Bearer <token>`` (RFC 6750
  section 2.1), compared in constant time; otherwise 401 and no state changes.
- Responses always carry Content-Length; JSON bodies are compact with sorted keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import http
import json
import logging
import math
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
MAX_HEADER = 16 << 10
MAX_HEADER_COUNT = 100
MAX_RESPONSE = 64 << 20
REQUEST_TIMEOUT = 10.0
READ_CHUNK = 64 << 10
LINGER_BYTES = 8 << 20
LINGER_SECONDS = 2.0
JSON_CONTENT_TYPE = "application/json"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 section 5.6.2
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
_DIGITS = re.compile(r"[0-9]{1,18}")
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # CTLs except HTAB (RFC 9110 section 5.5)
_SINGLETON_HEADERS = frozenset({"content-length", "authorization", "host", "transfer-encoding"})


class AdminError(ValueError):
    """A malformed or refused admin request; ``status`` is the 4xx code it maps to."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        if not 400 <= status <= 499:
            raise ValueError(f"AdminError status must be 4xx, got {status}")
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class AdminRequest:
    """One parsed request; ``path`` is percent-decoded, ``headers`` keys are lower-case."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        """The body as strict JSON (no NaN/Infinity); an empty body is ``None``."""
        if not self.body:
            return None
        try:
            return json.loads(self.body.decode("utf-8"), parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise AdminError("body is not valid JSON") from None


@dataclass(frozen=True)
class AdminResponse:
    """A handler's answer.  ``body``: str is sent as text, bytes as-is, anything else as JSON."""

    status: int = 200
    body: Any = None
    content_type: str = JSON_CONTENT_TYPE


Handler = Callable[[AdminRequest], Awaitable[AdminResponse]]


class AdminCallError(Exception):
    """A failed admin call; ``status`` is the HTTP status, or 0 when no valid response came."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"admin call failed ({status or 'no response'}): {message}")
        self.status = status
        self.message = message


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


# --- parsing (pure) -------------------------------------------------------------------------


def parse_header_lines(lines: list[bytes]) -> dict[str, str]:
    """RFC 9112 section 5 field lines -> lower-case names; repeated fields join with ", "."""
    if len(lines) > MAX_HEADER_COUNT:
        raise AdminError("too many header fields", status=431)
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            raise AdminError("malformed header field")  # also obs-fold and space before colon
        if _CTL.search(value):
            raise AdminError("control character in header value")
        key, text = name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")
        if key in headers and key in _SINGLETON_HEADERS:
            raise AdminError(f"repeated {key} header")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def parse_request_head(head: bytes) -> tuple[str, str, tuple[int, int], dict[str, str]]:
    """Request line + fields (without the blank line) -> (method, target, version, headers)."""
    lines = head.lstrip(b"\r\n").split(b"\r\n")  # RFC 9112 section 2.2: skip leading CRLFs
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]):
        raise AdminError("malformed request line")
    method, target, version = parts
    if not target.startswith(b"/") or _CTL.search(target) or b"\t" in target:
        raise AdminError("request target must be an origin-form path")
    match = _VERSION.fullmatch(version)
    if match is None:
        raise AdminError("malformed HTTP version")
    if match.group(1) != b"1":
        raise AdminError("only HTTP/1.x is supported")
    headers = parse_header_lines(lines[1:])
    return method.decode(), target.decode("latin-1"), (1, int(match.group(2))), headers


def split_target(target: str) -> tuple[str, dict[str, str]]:
    """Origin-form target -> (percent-decoded path, query with the last value winning)."""
    parts = urllib.parse.urlsplit(target)
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    return urllib.parse.unquote(parts.path), query


def body_length(headers: Mapping[str, str], max_body: int) -> int:
    """RFC 9112 section 6.3 for requests, with transfer codings refused: Content-Length or 0."""
    if "transfer-encoding" in headers:
        raise AdminError("transfer-encoding is not supported; send Content-Length", status=411)
    value = headers.get("content-length")
    if value is None:
        return 0
    if not _DIGITS.fullmatch(value):
        raise AdminError("malformed Content-Length")
    if int(value) > max_body:
        raise AdminError(f"body exceeds {max_body} bytes", status=413)
    return int(value)


def wants_keep_alive(version: tuple[int, int], headers: Mapping[str, str]) -> bool:
    """RFC 9112 section 9.3: HTTP/1.1 persists unless "close"; 1.0 only with "keep-alive"."""
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    if "close" in tokens:
        return False
    return version >= (1, 1) or "keep-alive" in tokens


def render_body(response: AdminResponse) -> tuple[bytes, str]:
    """Body bytes and Content-Type; a str left with the JSON default is labelled as text."""
    body = response.body
    if isinstance(body, bytes):
        return body, response.content_type
    if isinstance(body, str):
        ctype = response.content_type
        return body.encode(), TEXT_CONTENT_TYPE if ctype == JSON_CONTENT_TYPE else ctype
    return _dumps(body), response.content_type


def encode_response(
    status: int, body: bytes, content_type: str, *, close: bool, extra: Mapping[str, str]
) -> bytes:
    """Status line and fields (RFC 9112 section 4) plus body; 204/304 carry no content."""
    phrase = http.HTTPStatus(status).phrase
    lines = [f"HTTP/1.1 {status} {phrase}", f"Date: {_http_date()}"]
    if status not in (204, 304):
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    else:
        body = b""
    lines += ["Cache-Control: no-store", *(f"{k}: {v}" for k, v in extra.items())]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# --- server ---------------------------------------------------------------------------------


class _Stream:
    """One connection's bounded read buffer."""

    def __init__(self, reader: asyncio.StreamReader, max_header: int) -> None:
        self.reader = reader
        self.max_header = max_header
        self.buffer = bytearray()
        self.head_seen = False  # a request is in progress (its head has been consumed)

    async def _fill(self) -> bool:
        chunk = await self.reader.read(READ_CHUNK)
        self.buffer += chunk
        return bool(chunk)

    async def read_head(self) -> bytes | None:
        """The next request head, or None at a clean end of stream between requests."""
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if len(self.buffer) >= self.max_header:
                raise AdminError("request head too large", status=431)
            if not await self._fill():
                if self.buffer.strip(b"\r\n"):
                    raise AdminError("truncated request head")
                return None
        if end + 4 > self.max_header:
            raise AdminError("request head too large", status=431)
        head = bytes(self.buffer[:end])
        del self.buffer[: end + 4]
        self.head_seen = True
        return head

    async def read_body(self, length: int) -> bytes:
        while len(self.buffer) < length:
            if not await self._fill():
                raise AdminError("truncated request body")
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        return body


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = JSON_CONTENT_TYPE
    close: bool = False
    extra: dict[str, str] = field(default_factory=dict)


def _error_reply(
    status: int, message: str, *, close: bool = False, extra: Mapping[str, str] | None = None
) -> _Reply:
    return _Reply(status, _dumps({"error": message}), close=close, extra=dict(extra or {}))


class AdminServer:
    """Routes ``(method, path)`` to async handlers behind a bearer token."""

    def __init__(
        self,
        token: str,
        routes: Mapping[tuple[str, str], Handler],
        *,
        max_body: int = MAX_BODY,
        max_header: int = MAX_HEADER,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        if not token:
            raise ValueError("admin token must not be empty")
        if max_body < 0 or max_header < 64 or request_timeout <= 0:
            raise ValueError("admin limits must be positive (max_header >= 64)")
        self._token = token.encode()
        self._routes = dict(routes)
        self._max_body, self._max_header = max_body, max_header
        self._request_timeout = request_timeout
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.counters: dict[str, int] = dict.fromkeys(
            ("requests", "unauthorized", "bad_requests", "errors"), 0
        )

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen; returns the bound (host, port) so callers may pass port 0."""
        if self._server is not None:
            raise RuntimeError("admin server already started")
        self._server = await asyncio.start_server(self._on_connect, host, port)
        sockname = self._server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    async def close(self) -> None:
        """Stop listening and end every connection (in-flight handlers are cancelled)."""
        server, self._server = self._server, None
        if server is None:
            return
        self._closing = True
        server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            if not self._closing:
                await self._serve(_Stream(reader, self._max_header), writer)
        except OSError as exc:
            log.debug("admin connection dropped: %s", exc)
        except asyncio.CancelledError:
            if not self._closing:
                raise
            task.uncancel()  # cancelled by close(): end quietly (3.11 logs cancelled callbacks)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serve(self, stream: _Stream, writer: asyncio.StreamWriter) -> None:
        while True:
            stream.head_seen = False
            reply = await self._next_reply(stream, writer)
            if reply is None:
                return
            self.counters["requests"] += 1
            data = encode_response(
                reply.status, reply.body, reply.content_type, close=reply.close, extra=reply.extra
            )
            writer.write(data)
            async with asyncio.timeout(self._request_timeout):
                await writer.drain()
            if reply.close:
                await self._linger(stream, writer)
                return

    async def _linger(self, stream: _Stream, writer: asyncio.StreamWriter) -> None:
        """Half-close, then drain unread input for a bounded while, so the peer reads the error
        instead of a TCP reset (the "lingering close" of RFC 9112 section 9.6)."""
        writer.write_eof()
        discarded = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(LINGER_SECONDS, self._request_timeout)):
                while discarded < LINGER_BYTES and (chunk := await stream.reader.read(READ_CHUNK)):
                    discarded += len(chunk)

    async def _next_reply(self, stream: _Stream, writer: asyncio.StreamWriter) -> _Reply | None:
        try:
            async with asyncio.timeout(self._request_timeout):
                parsed = await self._read_request(stream, writer)
        except TimeoutError:
            if not stream.buffer and not stream.head_seen:
                return None  # an idle keep-alive connection: close quietly
            self.counters["bad_requests"] += 1
            return _error_reply(408, "request timed out", close=True)
        except AdminError as exc:
            self.counters["bad_requests"] += 1
            log.debug("bad admin request: %s", exc)
            return _error_reply(exc.status, str(exc), close=True)
        if parsed is None:
            return None
        request, keep_alive = parsed
        reply = await self._dispatch(request)
        reply.close = reply.close or not keep_alive
        return reply

    async def _read_request(
        self, stream: _Stream, writer: asyncio.StreamWriter
    ) -> tuple[AdminRequest, bool] | None:
        head = await stream.read_head()
        if head is None:
            return None
        method, target, version, headers = parse_request_head(head)
        length = body_length(headers, self._max_body)
        if length and version >= (1, 1) and headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # RFC 9110 section 10.1.1
        body = await stream.read_body(length)
        path, query = split_target(target)
        keep_alive = wants_keep_alive(version, headers)
        return AdminRequest(method, path, query, headers, body), keep_alive

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        presented = credentials.strip().encode("latin-1")
        return scheme.lower() == "bearer" and hmac.compare_digest(presented, self._token)

    async def _dispatch(self, request: AdminRequest) -> _Reply:
        if not self._authorized(request.headers):
            self.counters["unauthorized"] += 1
            return _error_reply(401, "missing or invalid bearer token", extra=_CHALLENGE)
        handler = self._routes.get((request.method, request.path))
        if handler is None:
            allowed = sorted(m for m, p in self._routes if p == request.path)
            if allowed:
                message = f"method {request.method} not allowed"
                return _error_reply(405, message, extra={"Allow": ", ".join(allowed)})
            return _error_reply(404, f"no such path: {request.path}")
        return await self._run(handler, request)

    async def _run(self, handler: Handler, request: AdminRequest) -> _Reply:
        try:
            response = await handler(request)
            if response.status not in _STATUSES:
                raise ValueError(f"handler returned status {response.status}")
            body, content_type = render_body(response)
        except AdminError as exc:
            self.counters["bad_requests"] += 1
            return _error_reply(exc.status, str(exc))
        except Exception as exc:
            self.counters["errors"] += 1
            log.exception("admin handler for %s %s failed", request.method, request.path)
            return _error_reply(500, f"internal error: {type(exc).__name__}")
        return _Reply(response.status, body, content_type)


def _http_date() -> str:
    """RFC 9110 IMF-fixdate, without importing the email package."""
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())


_STATUSES = frozenset(s.value for s in http.HTTPStatus if s.value >= 200)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="troon-admin"'}


# --- clients --------------------------------------------------------------------------------


def _error_message(body: bytes) -> str:
    with contextlib.suppress(ValueError, RecursionError):
        decoded = json.loads(body)
        if isinstance(decoded, dict) and isinstance(decoded.get("error"), str):
            return str(decoded["error"])
    return body[:200].decode("utf-8", "replace") or "(empty body)"


def _check(status: int, body: bytes) -> None:
    if not 200 <= status <= 299:
        raise AdminCallError(status, _error_message(body))


def _decode_json(status: int, body: bytes) -> Any:
    _check(status, body)
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise AdminCallError(status, "response is not valid JSON") from None


def _decode_text(status: int, body: bytes) -> str:
    _check(status, body)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise AdminCallError(status, "response is not valid UTF-8") from None


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not _VERSION.fullmatch(parts[0]) or not parts[1].isdigit():
        raise AdminError("malformed status line")
    headers = parse_header_lines(lines[1:])
    length = headers.get("content-length")
    if length is not None and not _DIGITS.fullmatch(length):
        raise AdminError("malformed Content-Length in response")
    if length is not None and int(length) > MAX_RESPONSE:
        raise AdminError("response too large")
    if length is not None:
        return int(parts[1]), await reader.readexactly(int(length))
    body = bytearray()  # no Content-Length: framed by the server closing (RFC 9112 section 6.3)
    while chunk := await reader.read(READ_CHUNK):
        body += chunk
        if len(body) > MAX_RESPONSE:
            raise AdminError("response too large")
    return int(parts[1]), bytes(body)


class AdminClient:
    """Async client; one connection per call (``Connection: close``), so calls never interfere."""

    def __init__(self, host: str, port: int, token: str, *, timeout: float = 5.0) -> None:
        if not token or any(c in token for c in "\r\n\0"):
            raise ValueError("admin token must be non-empty and free of CR, LF and NUL")
        self.host, self.port, self.timeout = host, port, timeout
        self._token = token

    async def get(self, path: str, **query: str) -> Any:
        return _decode_json(*await self._call("GET", _target(path, query), b""))

    async def get_text(self, path: str, **query: str) -> str:
        return _decode_text(*await self._call("GET", _target(path, query), b""))

    async def post(self, path: str, body: Any = None) -> Any:
        data = b"" if body is None else _dumps(body)
        return _decode_json(*await self._call("POST", _target(path, {}), data))

    async def _call(self, method: str, target: str, body: bytes) -> tuple[int, bytes]:
        typed = f"Content-Type: {JSON_CONTENT_TYPE}\r\n" if body else ""
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {self._token}\r\nAccept: */*\r\nConnection: close\r\n"
            f"{typed}Content-Length: {len(body)}\r\n\r\n"
        )
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(head.encode() + body)
        except TimeoutError:
            raise AdminCallError(0, f"timed out after {self.timeout} s") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise AdminCallError(0, f"{self.host}:{self.port}: {exc!r}") from exc
        except AdminError as exc:
            raise AdminCallError(0, f"malformed response: {exc}") from exc

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(request)
            await writer.drain()
            return await _read_response(reader)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _target(path: str, query: Mapping[str, str]) -> str:
    quoted = urllib.parse.quote(path if path.startswith("/") else "/" + path, safe="/")
    return f"{quoted}?{urllib.parse.urlencode(query)}" if query else quoted


def admin_call(  # noqa: PLR0917 -- positional signature is the documented CLI API
    host: str,
    port: int,
    token: str,
    method: str,
    path: str,
    body: Any = None,
    timeout: float = 5.0,
) -> Any:
    """Blocking call for CLIs; ``path`` may carry a query.  JSON responses are decoded, others
    are returned as text; failures raise :class:`AdminCallError`."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "*/*"}
    data = None if body is None else _dumps(body)
    if data is not None:
        headers["Content-Type"] = JSON_CONTENT_TYPE
    import http.client  # client side only: keeps the node process lean

    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read(MAX_RESPONSE + 1)
        status, content_type = response.status, response.getheader("Content-Type", "")
    except (OSError, http.client.HTTPException) as exc:
        raise AdminCallError(0, f"{host}:{port}: {exc!r}") from exc
    finally:
        conn.close()
    if len(raw) > MAX_RESPONSE:
        raise AdminCallError(status, "response too large")
    if content_type.split(";")[0].strip() == JSON_CONTENT_TYPE:
        return _decode_json(status, raw)
    return _decode_text(status, raw)


# --- OpenMetrics 1.0 text exposition --------------------------------------------------------

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_KINDS = frozenset({"counter", "gauge", "unknown"})


def _escape(text: str) -> str:
    """OpenMetrics escaping for label values and HELP text: backslash, newline, double quote."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"metric value must be a number, got {value!r}")
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _labels(labels: Mapping[str, str]) -> str:
    for name in labels:
        if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise ValueError(f"invalid label name {name!r}")
    inner = ",".join(f'{k}="{_escape(str(labels[k]))}"' for k in sorted(labels))
    return "{" + inner + "}" if inner else ""


def metric_family(
    name: str, kind: str, help: str, samples: Iterable[tuple[dict[str, str], float]]
) -> str:
    """One MetricFamily (TYPE, HELP, samples); counters expose ``<name>_total`` samples."""
    if kind not in _KINDS:
        raise ValueError(f"unsupported metric type {kind!r} (use one of {sorted(_KINDS)})")
    if kind == "counter" and name.endswith("_total"):
        name = name.removesuffix("_total")
    if not _METRIC_NAME.fullmatch(name):
        raise ValueError(f"invalid metric name {name!r}")
    lines = [f"# TYPE {name} {kind}", f"# HELP {name} {_escape(help)}"]
    sample_name = f"{name}_total" if kind == "counter" else name
    seen: set[str] = set()
    for labels, value in samples:
        number = _number(value)
        if kind == "counter" and (math.isnan(value) or value < 0):
            raise ValueError(f"counter {name} must be a non-negative number, got {value!r}")
        rendered = _labels(labels)
        if rendered in seen:
            raise ValueError(f"duplicate label set {rendered or '{}'} in {name}")
        seen.add(rendered)
        lines.append(f"{sample_name}{rendered} {number}")
    return "\n".join(lines) + "\n"


def render_openmetrics(families: Iterable[str]) -> str:
    """A complete exposition: the families in order, then the mandatory ``# EOF`` line."""
    return "".join(families) + "# EOF\n"
