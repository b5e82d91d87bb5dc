"""The bootstrap cache and contact strings: how a node finds its first peers, without DNS.

A node joins from contacts given in its config, on the command line or in the
environment, plus a cache of contacts it saved itself on a previous run (MaidSafe's
"bootstrap cache").  Kademlia (Maymounkov & Mazieres 2002, section 2.3) needs just one
live contact to join: the node then looks up its own name.

Contact strings are ``HOST:PORT/PUBKEYHEX`` with a literal IP (IPv6 in brackets):
hostnames are refused because nothing here resolves names.  The cache is versioned JSON
(never pickle).  Decoding checks every field; a malformed cache raises
:class:`BootstrapError` naming what is wrong, while a well-formed entry whose name is not
``BLAKE3(public key)`` is dropped (nobody picks their position in XOR space).

The codec functions are pure; :func:`save_cache` and :func:`load_cache` are the two tiny
file adapters (atomic write: temporary file, fsync, ``os.replace``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from node.atomicfile import write_atomic
from node.identity import xor_name
from node.routing.contact import Contact, RoutingError, fields_from_dict

CACHE_VERSION = 1
MAX_CACHE_BYTES = 1 << 20
MAX_CACHE_CONTACTS = 1000
MAX_CONTACT_CHARS = 200
_KEY_HEX = re.compile(r"[0-9a-fA-F]{64}")
_FORM = "expected HOST:PORT/PUBKEYHEX"


class BootstrapError(RoutingError):
    """A malformed bootstrap cache or contact string."""


def encode_cache(contacts: Iterable[Contact], *, limit: int = MAX_CACHE_CONTACTS) -> bytes:
    """The cache file for ``contacts`` (best first; duplicates and extras beyond ``limit`` cut)."""
    unique: dict[bytes, Contact] = {}
    for contact in contacts:
        if len(unique) >= min(limit, MAX_CACHE_CONTACTS):
            break
        unique.setdefault(contact.name, contact)
    doc = {"version": CACHE_VERSION, "contacts": [c.to_dict() for c in unique.values()]}
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def decode_cache(data: bytes) -> list[Contact]:
    """The contacts in a cache file, in file order, forged and duplicate entries dropped."""
    entries = _cache_entries(_load_json(data))
    contacts: dict[bytes, Contact] = {}
    for i, entry in enumerate(entries):
        try:
            name, public_key, address = fields_from_dict(entry)
        except RoutingError as exc:
            raise BootstrapError(f"bootstrap cache contacts[{i}]: {exc}") from None
        if name not in contacts and xor_name(public_key) == name:
            contacts[name] = Contact(name, public_key, address)
    return list(contacts.values())


def _load_json(data: bytes) -> object:
    if not isinstance(data, bytes):
        raise BootstrapError("bootstrap cache must be bytes")
    if len(data) > MAX_CACHE_BYTES:
        raise BootstrapError(f"bootstrap cache is over {MAX_CACHE_BYTES} bytes")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise BootstrapError("bootstrap cache is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise BootstrapError(f"bootstrap cache is not JSON: {exc}") from None


def _cache_entries(doc: object) -> list[object]:
    if not isinstance(doc, dict) or set(doc) != {"version", "contacts"}:
        raise BootstrapError("bootstrap cache must be an object with version and contacts")
    version = doc["version"]
    if type(version) is not int or version != CACHE_VERSION:
        raise BootstrapError(f"bootstrap cache version {version!r} is not {CACHE_VERSION}")
    entries = doc["contacts"]
    if not isinstance(entries, list):
        raise BootstrapError("bootstrap cache contacts must be a list")
    if len(entries) > MAX_CACHE_CONTACTS:
        raise BootstrapError(f"bootstrap cache has over {MAX_CACHE_CONTACTS} contacts")
    return entries


def parse_contact(text: str) -> Contact:
    """Parse ``IPV4:PORT/PUBKEYHEX`` or ``[IPV6]:PORT/PUBKEYHEX`` (literal IPs only, no DNS)."""
    if not isinstance(text, str) or len(text) > MAX_CONTACT_CHARS:
        raise BootstrapError(f"contact must be a string of at most {MAX_CONTACT_CHARS} chars")
    where, slash, key_hex = text.strip().rpartition("/")
    if not slash:
        raise BootstrapError(f"contact {text!r}: {_FORM}")
    if not _KEY_HEX.fullmatch(key_hex):
        raise BootstrapError(f"contact {text!r}: public key must be 64 hex characters")
    address = _parse_address(where)
    try:
        return Contact.of(bytes.fromhex(key_hex), address)
    except RoutingError as exc:
        raise BootstrapError(f"contact {text!r}: {exc}") from None


def _parse_address(where: str) -> tuple[str, int]:
    bracketed = where.startswith("[")
    if bracketed:
        host, sep, port = where[1:].partition("]:")
    else:
        host, sep, port = where.rpartition(":")
    if not sep:
        raise BootstrapError(f"address {where!r}: {_FORM} (IPv6 as [ADDR]:PORT)")
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535):
        raise BootstrapError(f"address {where!r}: port must be 1..65535")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise BootstrapError(
            f"address {where!r}: {host!r} is not a literal IP address "
            "(no DNS: give an IPv4 address or a bracketed [IPv6] address)"
        ) from None
    if (ip.version == 6) != bracketed:
        raise BootstrapError(f"address {where!r}: IPv6 goes in brackets, IPv4 does not")
    return str(ip), int(port)


def format_contact(contact: Contact) -> str:
    """The ``HOST:PORT/PUBKEYHEX`` string :func:`parse_contact` reads back."""
    host, port = contact.address
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}/{contact.public_key.hex()}"


def save_cache(path: str | os.PathLike[str], contacts: Iterable[Contact]) -> None:
    """Write the cache atomically: a crash leaves the old file or the new one, never half."""
    target = Path(path)
    write_atomic(target, encode_cache(contacts), temp_prefix=f".{target.name}.")


def load_cache(path: str | os.PathLike[str]) -> list[Contact]:
    """The cached contacts, or ``[]`` when there is no cache file yet."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CACHE_BYTES + 1)
    except FileNotFoundError:
        return []
    return decode_cache(data)
