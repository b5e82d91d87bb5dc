"""A stand-alone transport peer process for tests, benchmarks and the demo.

``python -m node.testing.peer [--host H] [--mode echo|sink] [--uvloop]`` binds a
UDP port, prints one JSON line ``{"addr": [host, port], "public_key": hex}`` on
stdout and serves until killed or stdin closes:

* ``echo``: every reliable message is sent straight back;
* ``sink``: messages are counted; a message ``b"?"`` is answered with the byte
  count received so far (ASCII), so a sender can time a bulk transfer at the
  receiver's side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from node.identity import Identity
from node.transport.aio import Transport, install_uvloop
from node.transport.config import TransportConfig
from node.transport.events import MessageReceived


async def serve(host: str, mode: str, idle_timeout: float) -> None:
    config = TransportConfig(idle_timeout=idle_timeout, keepalive_interval=idle_timeout / 3)
    transport = Transport(Identity.generate(), config)
    addr = await transport.start(host, 0)
    line = {"addr": list(addr), "public_key": transport.identity.public_key.hex()}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    stdin_closed: asyncio.Future[None] = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), _on_stdin, stdin_closed)
    worker = asyncio.ensure_future(_handle(transport, mode))
    try:
        await asyncio.wait([worker, stdin_closed], return_when=asyncio.FIRST_COMPLETED)
    finally:
        loop.remove_reader(sys.stdin.fileno())
        worker.cancel()
        await transport.aclose()


async def _handle(transport: Transport, mode: str) -> None:
    received = 0
    while True:
        event = await transport.recv()
        if not isinstance(event, MessageReceived):
            continue
        if mode == "echo":
            transport.send(event.peer, event.data)
        elif event.data == b"?":
            transport.send(event.peer, str(received).encode())
        else:
            received += len(event.data)


def _on_stdin(done: asyncio.Future[None]) -> None:
    if not os.read(sys.stdin.fileno(), 4096) and not done.done():
        done.set_result(None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--mode", choices=("echo", "sink"), default="echo")
    parser.add_argument("--idle-timeout", type=float, default=TransportConfig().idle_timeout)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args(argv)
    if args.uvloop:
        install_uvloop()
    asyncio.run(serve(args.host, args.mode, args.idle_timeout))


if __name__ == "__main__":
    main()
