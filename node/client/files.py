"""Files on the network: self-encrypt locally, store every chunk with 4 copies, rebuild.

The self-encryption functions are blocking and call ``put_chunk``/``get_chunk`` from
the thread they run in, so they run in a worker thread while the chunks travel on the
client's event loop; at most :data:`IN_FLIGHT` chunk stores are outstanding at once
(bounded memory: a few chunks).  A private file's key is its DataMap, which stays with
the owner; a public file's DataMap is itself stored as a chunk, whose name is then an
address anyone can fetch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Callable
from pathlib import Path

from node.client.aio import Client, ClientError
from node.selfenc import DataMap, SelfEncryptionError, decrypt_file, encrypt_file
from node.storage.chunkstore import MAX_CHUNK_SIZE

IN_FLIGHT = 4
Progress = Callable[[int], None]
"""Called with the number of bytes just stored or fetched."""


async def put_file(client: Client, path: Path, *, progress: Progress | None = None) -> DataMap:
    """Self-encrypt ``path`` and store every chunk; returns the DataMap (the file's only key)."""
    loop = asyncio.get_running_loop()
    pending: list[tuple[concurrent.futures.Future[bytes], int]] = []

    def settle_one() -> None:
        fut, size = pending.pop(0)
        fut.result()
        if progress is not None:
            progress(size)

    def put_chunk(name: bytes, content: bytes) -> None:
        while len(pending) >= IN_FLIGHT:
            settle_one()
        fut = asyncio.run_coroutine_threadsafe(client.put_chunk(bytes(content)), loop)
        pending.append((fut, len(content)))

    def work() -> DataMap:
        data_map = encrypt_file(path, put_chunk)
        while pending:
            settle_one()
        return data_map

    try:
        return await asyncio.to_thread(work)
    except SelfEncryptionError as exc:
        raise ClientError(f"cannot encrypt {path}: {exc}") from exc
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror}") from exc


async def get_file(
    client: Client, data_map: DataMap, path: Path, *, progress: Progress | None = None
) -> None:
    """Fetch, verify and decrypt a file to ``path`` (nothing is written unless all is good)."""
    loop = asyncio.get_running_loop()

    def get_chunk(name: bytes) -> bytes:
        data = asyncio.run_coroutine_threadsafe(client.get_chunk(name), loop).result()
        if progress is not None:
            progress(len(data))
        return data

    try:
        await asyncio.to_thread(decrypt_file, data_map, get_chunk, path)
    except SelfEncryptionError as exc:
        raise ClientError(f"cannot rebuild the file: {exc}") from exc


async def publish(client: Client, data_map: DataMap) -> bytes:
    """Store a DataMap as a chunk; its name is the file's public address."""
    return await client.put_chunk(data_map.to_bytes())


async def resolve(client: Client, address: bytes) -> DataMap:
    """The DataMap behind a public address."""
    raw = await client.get_chunk(address)
    if len(raw) > MAX_CHUNK_SIZE:
        raise ClientError("that address does not hold a DataMap")
    try:
        return DataMap.from_bytes(raw)
    except SelfEncryptionError as exc:
        raise ClientError(f"that address does not hold a DataMap: {exc}") from exc


def file_size(path: Path) -> int:
    return os.stat(path).st_size
