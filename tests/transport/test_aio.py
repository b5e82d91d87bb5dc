"""Real UDP sockets on 127.0.0.1 (port 0): the asyncio adapter end to end.

Includes a second OS process (node.testing.peer) that is SIGKILLed, to see the
ICMP port-unreachable path raise PeerDead at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from node.identity import Identity
from node.transport.aio import Transport
from node.transport.config import TransportConfig
from node.transport.endpoint import TransportError
from node.transport.events import (
    Connected,
    DatagramReceived,
    Event,
    MessageReceived,
    PeerClosed,
    PeerDead,
)
from node.transport.impair import LinkRule


async def next_of(t: Transport, kind: type, timeout: float = 10.0) -> Any:
    async def loop() -> Event:
        while True:
            ev = await t.recv()
            if isinstance(ev, kind):
                return ev

    return await asyncio.wait_for(loop(), timeout)


async def pair(config: TransportConfig | None = None) -> tuple[Transport, Transport]:
    a = Transport(Identity.generate(), config)
    b = Transport(Identity.generate(), config)
    await a.start()
    await b.start()
    await a.connect(b.identity.public_key, b.address)
    await next_of(b, Connected)
    return a, b


@pytest.fixture
def peer_process() -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any]]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "node.testing.peer", "--mode", "echo"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    yield proc, info
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    proc.stdout.close()
    assert proc.stdin is not None
    proc.stdin.close()


def test_messages_both_ways_and_datagrams() -> None:
    async def run() -> None:
        a, b = await pair()
        pa, pb = a.identity.public_key, b.identity.public_key
        for i in range(50):
            a.send(pb, b"to-b %d" % i)
            b.send(pa, b"to-a %d" % i)
        got_b = [(await next_of(b, MessageReceived)).data for _ in range(50)]
        got_a = [(await next_of(a, MessageReceived)).data for _ in range(50)]
        assert got_b == [b"to-b %d" % i for i in range(50)]
        assert got_a == [b"to-a %d" % i for i in range(50)]
        a.send_datagram(pb, b"unreliable")
        assert (await next_of(b, DatagramReceived)).data == b"unreliable"
        await a.aclose()
        await b.aclose()

    asyncio.run(run())


def test_large_message_is_fragmented_and_reassembled() -> None:
    async def run() -> None:
        a, b = await pair()
        blob = os.urandom(3 * 1024 * 1024 + 7)
        a.send(b.identity.public_key, blob)
        assert (await next_of(b, MessageReceived)).data == blob
        with pytest.raises(TransportError):
            a.send(b.identity.public_key, bytes(16 * 1024 * 1024 + 1))
        await a.aclose()
        await b.aclose()

    asyncio.run(run())


def test_graceful_close_is_seen_by_the_peer() -> None:
    async def run() -> None:
        a, b = await pair()
        await a.aclose("leaving")
        closed = await next_of(b, PeerClosed)
        assert closed.peer == a.identity.public_key
        assert closed.reason == "leaving"
        await b.aclose()

    asyncio.run(run())


def test_killed_process_is_detected_through_icmp(
    peer_process: tuple[subprocess.Popen[bytes], dict[str, Any]],
) -> None:
    proc, info = peer_process
    peer = bytes.fromhex(info["public_key"])
    addr = (info["addr"][0], info["addr"][1])

    async def run() -> None:
        t = Transport(Identity.generate(), TransportConfig(idle_timeout=30, keepalive_interval=10))
        await t.start()
        await t.connect(peer, addr)
        t.send(peer, b"ping")
        assert (await next_of(t, MessageReceived)).data == b"ping"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        t.send(peer, b"anyone there?")
        dead = await next_of(t, PeerDead, timeout=5)
        assert dead.peer == peer
        assert "ICMP" in dead.reason
        await t.aclose()

    asyncio.run(run())


def test_blackholed_peer_is_declared_dead_after_idle_timeout() -> None:
    async def run() -> None:
        config = TransportConfig(idle_timeout=0.6, keepalive_interval=0.2)
        a, b = await pair(config)
        a.impairment.set_rule(f"addr:{b.address[0]}:{b.address[1]}", LinkRule(blackhole=True))
        dead = await next_of(a, PeerDead, timeout=5)
        assert dead.reason == "idle timeout"
        assert not a.endpoint.is_connected(b.identity.public_key)
        await a.aclose()
        await b.aclose()

    asyncio.run(run())


def test_messages_survive_impairment_loss_on_real_sockets() -> None:
    async def run() -> None:
        a, b = await pair()
        rule = LinkRule(loss=0.05, delay=0.002, jitter=0.002, duplicate=0.01)
        a.impairment.set_rule("*", rule)
        pb = b.identity.public_key
        for i in range(300):
            a.send(pb, b"%d:" % i + bytes(i * 7))
        got = [(await next_of(b, MessageReceived, timeout=30)).data for _ in range(300)]
        assert got == [b"%d:" % i + bytes(i * 7) for i in range(300)]
        assert a.impairment.stats()["dropped_loss"] > 0
        await a.aclose()
        await b.aclose()

    asyncio.run(run())


def test_connect_to_nobody_fails_cleanly() -> None:
    async def run() -> None:
        t = Transport(Identity.generate(), TransportConfig(handshake_timeout=0.5))
        await t.start()
        silent = Transport(Identity.generate())
        await silent.start()
        addr = silent.address
        await silent.aclose()  # nothing listens there any more
        with pytest.raises(TransportError):
            await t.connect(Identity.generate().public_key, addr)
        await t.aclose()

    asyncio.run(run())
