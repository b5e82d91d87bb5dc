"""Anchors for the transport benchmark (DESIGN.md section 4).

Two reference points measured on loopback, each with a sender and a receiver in separate
processes (``multiprocessing`` "spawn" context, so each side can have a core):

* :func:`raw_udp_aead_ceiling` -- "the ceiling": every 1200-byte payload is sealed with
  ChaCha20-Poly1305 and blasted with ``sendto``; the receiver drains, decrypts and counts.
  No reliability, no flow control. Nothing built on UDP + AEAD in Python should beat it.
* :func:`aioquic_bulk` -- "the anchor": one aioquic stream carrying ``total_bytes`` from a
  client process to a server process, with aioquic's default configuration (Reno).

Both functions enforce a hard time limit, always reap their children and raise
``RuntimeError`` with a clear message when something goes wrong. All traffic stays on
127.0.0.1; every port is chosen by binding port 0.

Run ``python bench/anchors.py --mb 20`` for a quick table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import multiprocessing as mp
import os
import queue
import select
import socket
import ssl
import struct
import tempfile
import time
from collections.abc import Callable
from typing import Any

__all__ = ["aioquic_bulk", "raw_udp_aead_ceiling"]

LOOPBACK = "127.0.0.1"
ALPN = "troon-bench"
DEFAULT_TIMEOUT = 120.0

_HEADER = struct.Struct(">Q")  # clear-text packet counter, also the AEAD nonce suffix
_NONCE_PREFIX = b"\x00\x00\x00\x00"
_TAG_LEN = 16
_RCVBUF = 8 * 1024 * 1024
_MAX_BURST = 0.002  # a late paced sender catches up by at most this long
_IDLE_END = 0.25  # receiver ends after this much silence once the sender has finished

_Msg = tuple[str, str, Any]  # (who, kind, payload); kind is "ok", "info" or "error"


# --------------------------------------------------------------------------------------
# process plumbing
# --------------------------------------------------------------------------------------


def _ctx() -> Any:
    return mp.get_context("spawn")


def _report_errors(who: str, out: Any, body: Callable[[], None]) -> None:
    """Run ``body`` in a child; turn any exception into an ("error") message."""
    try:
        body()
    except BaseException as exc:  # the parent must hear about every failure
        with contextlib.suppress(Exception):
            out.put((who, "error", f"{type(exc).__name__}: {exc}"))
        raise


def _reap(procs: list[Any]) -> None:
    """Terminate, then kill, every child still alive; always join and close."""
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(2.0)
        if proc.is_alive():
            proc.kill()
            proc.join(2.0)
        with contextlib.suppress(ValueError):
            proc.close()


def _wait_for(out: Any, who: str, kind: str, procs: list[Any], deadline: float, what: str) -> Any:
    """Return the payload of the first (who, kind) message; fail on error/death/deadline."""
    pending: list[_Msg] = []
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"{what}: timed out waiting for {who}/{kind}")
            try:
                msg: _Msg = out.get(timeout=min(remaining, 0.25))
            except queue.Empty:
                for proc in procs:
                    if proc.exitcode not in (None, 0):
                        raise RuntimeError(
                            f"{what}: child {proc.name} died with exit code {proc.exitcode}"
                        ) from None
                continue
            m_who, m_kind, payload = msg
            if m_kind == "error":
                raise RuntimeError(f"{what}: {m_who} failed: {payload}")
            if (m_who, m_kind) == (who, kind):
                return payload
            pending.append(msg)
    finally:
        for msg in pending:  # keep unrelated messages for a later _wait_for
            out.put(msg)


# --------------------------------------------------------------------------------------
# the ceiling: raw UDP + ChaCha20-Poly1305
# --------------------------------------------------------------------------------------


def _udp_receiver(key: bytes, payload: int, out: Any, sender_done: Any) -> None:
    def body() -> None:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

        decrypt = ChaCha20Poly1305(key).decrypt
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        sock.bind((LOOPBACK, 0))
        sock.setblocking(False)
        rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        out.put(("receiver", "info", {"port": sock.getsockname()[1], "rcvbuf": rcvbuf}))

        buf = bytearray(65536)
        view = memoryview(buf)
        recv = sock.recvfrom_into
        hdr = _HEADER.size
        expected = hdr + payload + _TAG_LEN
        good = bad = nbytes = 0
        first = last = 0.0
        idle_since: float | None = None
        fd = sock.fileno()
        while True:
            try:
                n, _addr = recv(buf)
            except BlockingIOError:
                ready, _, _ = select.select([fd], [], [], 0.05)
                if ready:
                    idle_since = None
                    continue
                now = time.perf_counter()
                if sender_done.is_set():
                    if idle_since is None:
                        idle_since = now
                    elif now - idle_since >= _IDLE_END:
                        break
                continue
            if good == 0 and bad == 0:
                first = time.perf_counter()
            if n != expected:
                bad += 1
                continue
            try:
                plain = decrypt(_NONCE_PREFIX + buf[:hdr], view[hdr:n], None)
            except InvalidTag:
                bad += 1
                continue
            good += 1
            nbytes += len(plain)
            last = time.perf_counter()
        sock.close()
        out.put(
            (
                "receiver",
                "ok",
                {"packets": good, "bad": bad, "bytes": nbytes, "seconds": last - first},
            )
        )

    _report_errors("receiver", out, body)


def _udp_sender(
    key: bytes, port: int, packets: int, payload: int, rate: float, out: Any, done: Any
) -> None:
    """Seal and send ``packets`` datagrams; ``rate`` > 0 paces to that many payload B/s."""

    def body() -> None:
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

        encrypt = ChaCha20Poly1305(key).encrypt
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LOOPBACK, 0))
        addr = (LOOPBACK, port)
        sendto = sock.sendto
        pack = _HEADER.pack
        data = os.urandom(payload)
        clock = time.perf_counter
        start = clock()
        if rate <= 0:
            for i in range(packets):
                head = pack(i)
                sendto(head + encrypt(_NONCE_PREFIX + head, data, None), addr)
        else:
            # Spin-wait pacing: the sender has its own core; a late sender may catch up
            # by at most _MAX_BURST seconds' worth of packets, never more.
            interval = payload / rate
            due = start
            for i in range(packets):
                head = pack(i)
                sendto(head + encrypt(_NONCE_PREFIX + head, data, None), addr)
                due += interval
                now = clock()
                if now - due > _MAX_BURST:
                    due = now
                while now < due:
                    now = clock()
        elapsed = clock() - start
        done.set()
        sock.close()
        out.put(("sender", "ok", {"packets": packets, "seconds": elapsed}))

    _report_errors("sender", out, body)


def _udp_round(total_bytes: int, payload: int, rate: float, timeout: float) -> dict[str, float]:
    ctx = _ctx()
    out = ctx.Queue()
    done = ctx.Event()
    key = os.urandom(32)
    packets = max(1, -(-total_bytes // payload))
    deadline = time.monotonic() + timeout
    what = "raw_udp_aead_ceiling"
    receiver = ctx.Process(
        target=_udp_receiver, args=(key, payload, out, done), name="udp-receiver", daemon=True
    )
    procs = [receiver]
    try:
        receiver.start()
        info = _wait_for(out, "receiver", "info", procs, deadline, what)
        sender = ctx.Process(
            target=_udp_sender,
            args=(key, info["port"], packets, payload, rate, out, done),
            name="udp-sender",
            daemon=True,
        )
        procs.append(sender)
        sender.start()
        sent = _wait_for(out, "sender", "ok", procs, deadline, what)
        got = _wait_for(out, "receiver", "ok", procs, deadline, what)
    finally:
        _reap(procs)
        out.close()
        out.join_thread()
    if got["packets"] == 0:
        raise RuntimeError(f"{what}: receiver decrypted no packet at all")
    seconds = got["seconds"] if got["seconds"] > 0 else sent["seconds"]
    return {
        "mb_per_s": got["bytes"] / seconds / 1e6,
        "packets_per_s": got["packets"] / seconds,
        "loss": 1.0 - got["packets"] / sent["packets"],
        "seconds": seconds,
        "sender_seconds": sent["seconds"],
        "sender_mb_per_s": sent["packets"] * payload / sent["seconds"] / 1e6,
        "offered_mb_per_s": rate / 1e6,
        "bad_packets": float(got["bad"]),
        "rcvbuf": float(info["rcvbuf"]),
    }


def raw_udp_aead_ceiling(
    total_bytes: int = 50_000_000,
    payload: int = 1200,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_loss: float = 0.01,
    max_rounds: int = 4,
) -> dict[str, float]:
    """Raw UDP + ChaCha20-Poly1305 on loopback: the ceiling for a Python transport.

    A sender process seals ``payload``-byte packets (nonce = packet counter, sent in clear
    ahead of the ciphertext) and ``sendto``s them; a receiver process drains its socket
    (non-blocking ``recvfrom_into`` into a preallocated buffer, ``select`` when empty,
    8 MiB ``SO_RCVBUF`` requested), decrypts and counts. The receiver ends after 0.25 s of
    silence once the sender has signalled completion. MB/s and packets/s are of payload the
    receiver decrypted, from its first to its last packet.

    The first round is unpaced. If it loses more than ``max_loss`` (receiver socket
    overflow), the next round paces the sender at 95 % of the rate the receiver sustained
    (a receiver that overflows was busy all along, so that rate is its maximum); a further
    lossy round lowers the pace to 85 % of its receiver rate, up to ``max_rounds`` rounds.
    The first round within ``max_loss`` (or the last one tried) is returned.

    Returns ``mb_per_s``, ``packets_per_s``, ``loss``, ``seconds`` plus diagnostics:
    ``sender_seconds``, ``sender_mb_per_s``, ``offered_mb_per_s`` (pacing target,
    0 = unpaced), ``rounds``, ``first_loss`` and ``first_mb_per_s`` (the unpaced round),
    ``bad_packets``, ``rcvbuf`` (as the kernel reports it, i.e. doubled).
    """
    if total_bytes <= 0 or not 0 < payload <= 65000:
        raise ValueError("total_bytes must be > 0 and 0 < payload <= 65000")
    deadline = time.monotonic() + timeout
    rate = 0.0
    first: dict[str, float] = {}
    result: dict[str, float] = {}
    for rnd in range(1, max(1, max_rounds) + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if result:
                break
            raise RuntimeError("raw_udp_aead_ceiling: timed out")
        result = _udp_round(total_bytes, payload, rate, remaining)
        result["rounds"] = float(rnd)
        first = first or result
        if result["loss"] <= max_loss:
            break
        rate = result["mb_per_s"] * 1e6 * (0.95 if rnd == 1 else 0.85)
    result["first_loss"] = first["loss"]
    result["first_mb_per_s"] = first["mb_per_s"]
    return result


# --------------------------------------------------------------------------------------
# the anchor: aioquic, one bulk stream
# --------------------------------------------------------------------------------------


def _write_self_signed_cert(directory: str) -> tuple[str, str]:
    """Write a fresh self-signed EC certificate for localhost; return (cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, "cert.pem")
    key_path = os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


def _run_loop(main: Any, use_uvloop: bool) -> None:
    if use_uvloop:
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)


def _quic_server(cert: str, key: str, out: Any, use_uvloop: bool) -> None:
    async def main() -> None:
        from aioquic.asyncio import QuicConnectionProtocol, serve
        from aioquic.quic.configuration import QuicConfiguration
        from aioquic.quic.events import StreamDataReceived

        loop = asyncio.get_running_loop()
        finished: asyncio.Future[dict[str, float]] = loop.create_future()

        class BulkServer(QuicConnectionProtocol):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.received = 0
                self.first = 0.0

            def quic_event_received(self, event: Any) -> None:
                if isinstance(event, StreamDataReceived):
                    if self.received == 0 and event.data:
                        self.first = time.perf_counter()
                    self.received += len(event.data)
                    if event.end_stream:
                        end = time.perf_counter()
                        self._quic.send_stream_data(event.stream_id, b"ok", end_stream=True)
                        self.transmit()
                        if not finished.done():
                            finished.set_result(
                                {"bytes": self.received, "seconds": end - self.first}
                            )

        config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
        config.load_cert_chain(cert, key)
        server = await serve(LOOPBACK, 0, configuration=config, create_protocol=BulkServer)
        port = server._transport.get_extra_info("sockname")[1]
        out.put(("server", "info", {"port": port}))
        result = await finished
        out.put(("server", "ok", result))
        await asyncio.sleep(1.0)  # let the reply and the client's CONNECTION_CLOSE through
        server.close()

    _report_errors("server", out, lambda: _run_loop(main(), use_uvloop))


def _quic_client(port: int, total_bytes: int, chunk: int, out: Any, use_uvloop: bool) -> None:
    async def main() -> None:
        from aioquic.asyncio import QuicConnectionProtocol
        from aioquic.quic.configuration import QuicConfiguration
        from aioquic.quic.connection import QuicConnection

        config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN], verify_mode=ssl.CERT_NONE)
        config.server_name = "localhost"
        loop = asyncio.get_running_loop()
        # Same steps as aioquic.asyncio.connect(), but bound to 127.0.0.1 rather than "::".
        transport, proto = await loop.create_datagram_endpoint(
            lambda: QuicConnectionProtocol(QuicConnection(configuration=config)),
            local_addr=(LOOPBACK, 0),
        )
        client: Any = proto
        try:
            client.connect((LOOPBACK, port))
            await client.wait_connected()
            reader, writer = await client.create_stream()
            data = os.urandom(min(chunk, total_bytes))
            start = time.perf_counter()
            left = total_bytes
            while left > 0:
                piece = data if left >= len(data) else data[:left]
                writer.write(piece)
                left -= len(piece)
            writer.write_eof()
            reply = await reader.read()
            elapsed = time.perf_counter() - start
            if reply != b"ok":
                raise RuntimeError(f"unexpected reply from server: {reply!r}")
            out.put(("client", "ok", {"seconds": elapsed}))
        finally:
            client.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(client.wait_closed(), 2.0)
            transport.close()

    _report_errors("client", out, lambda: _run_loop(main(), use_uvloop))


def aioquic_bulk(
    total_bytes: int = 50_000_000,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    chunk: int = 65536,
    use_uvloop: bool = False,
) -> dict[str, float]:
    """aioquic on loopback: one stream of ``total_bytes`` from client to server process.

    Self-signed certificate made at run time (temporary directory, removed afterwards),
    ALPN ``troon-bench``, default congestion control and flow-control windows. The client
    writes the stream in ``chunk``-byte pieces through aioquic's asyncio stream API, ends
    it, and waits for the server's 2-byte reply, which the server sends when the stream
    ends. ``mb_per_s``/``seconds`` are measured at the server from first byte to end of
    stream; ``client_seconds`` is the client's wall time from first write to the reply.
    """
    if total_bytes <= 0 or chunk <= 0:
        raise ValueError("total_bytes and chunk must be > 0")
    ctx = _ctx()
    out = ctx.Queue()
    deadline = time.monotonic() + timeout
    what = "aioquic_bulk"
    procs: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="troon-bench-") as tmp:
        cert, key = _write_self_signed_cert(tmp)
        try:
            server = ctx.Process(
                target=_quic_server,
                args=(cert, key, out, use_uvloop),
                name="quic-server",
                daemon=True,
            )
            procs.append(server)
            server.start()
            info = _wait_for(out, "server", "info", procs, deadline, what)
            client = ctx.Process(
                target=_quic_client,
                args=(info["port"], total_bytes, chunk, out, use_uvloop),
                name="quic-client",
                daemon=True,
            )
            procs.append(client)
            client.start()
            got = _wait_for(out, "server", "ok", procs, deadline, what)
            sent = _wait_for(out, "client", "ok", procs, deadline, what)
        finally:
            _reap(procs)
            out.close()
            out.join_thread()
    if got["bytes"] != total_bytes:
        raise RuntimeError(f"{what}: server received {got['bytes']} of {total_bytes} bytes")
    return {
        "mb_per_s": got["bytes"] / got["seconds"] / 1e6,
        "seconds": got["seconds"],
        "client_seconds": sent["seconds"],
        "client_mb_per_s": total_bytes / sent["seconds"] / 1e6,
    }


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(description="Transport benchmark anchors (loopback).")
    parser.add_argument("--mb", type=float, default=50.0, help="megabytes per run (1e6)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each anchor")
    parser.add_argument("--uvloop", action="store_true", help="run aioquic on uvloop")
    args = parser.parse_args(argv)
    total = int(args.mb * 1e6)

    table = Table(title=f"Transport anchors, {args.mb:g} MB on 127.0.0.1")
    for col in ("anchor", "run", "MB/s", "packets/s", "loss", "seconds", "notes"):
        table.add_column(col, justify="left" if col in ("anchor", "notes") else "right")
    for run in range(1, args.runs + 1):
        udp = raw_udp_aead_ceiling(total)
        table.add_row(
            "raw UDP + ChaCha20-Poly1305",
            str(run),
            f"{udp['mb_per_s']:.1f}",
            f"{udp['packets_per_s']:,.0f}",
            f"{udp['loss']:.2%}",
            f"{udp['seconds']:.2f}",
            f"rounds {udp['rounds']:.0f}, unpaced {udp['first_mb_per_s']:.0f} MB/s "
            f"loss {udp['first_loss']:.1%}, offered {udp['offered_mb_per_s']:.0f} MB/s",
        )
        quic = aioquic_bulk(total, use_uvloop=args.uvloop)
        table.add_row(
            "aioquic, one stream" + (" (uvloop)" if args.uvloop else ""),
            str(run),
            f"{quic['mb_per_s']:.1f}",
            "",
            "",
            f"{quic['seconds']:.2f}",
            f"client wall {quic['client_seconds']:.2f} s",
        )
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 132)
    console.print(table)


if __name__ == "__main__":
    main()
