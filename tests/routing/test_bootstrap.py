"""Bootstrap cache codec, contact strings (no DNS) and the atomic cache file."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.identity import Identity
from node.routing.bootstrap import (
    MAX_CACHE_BYTES,
    BootstrapError,
    decode_cache,
    encode_cache,
    format_contact,
    load_cache,
    parse_contact,
    save_cache,
)
from node.routing.contact import Contact, RoutingError

hosts = st.ip_addresses().filter(lambda ip: not ip.is_unspecified).map(str)
contacts = st.builds(
    lambda pk, host, port: Contact.of(pk, (host, port)),
    st.binary(min_size=32, max_size=32),
    hosts,
    st.integers(1, 65535),
)


def sample(n: int, seed: int = 0) -> list[Contact]:
    rng = random.Random(seed)
    return [Contact.of(rng.randbytes(32), ("192.0.2.7", 5000 + i)) for i in range(n)]


def doc_with(entries: list[object]) -> bytes:
    return json.dumps({"version": 1, "contacts": entries}).encode()


@given(st.lists(contacts, max_size=20))
def test_cache_round_trip(cs: list[Contact]) -> None:
    unique: list[Contact] = []
    for c in cs:
        if all(u.name != c.name for u in unique):
            unique.append(c)  # the first contact of each name is kept
    assert decode_cache(encode_cache(cs)) == unique


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_bootstrap_error(data: bytes) -> None:
    try:
        result = decode_cache(data)
    except BootstrapError:
        return
    assert all(isinstance(c, Contact) for c in result)


@given(st.lists(contacts, min_size=1, max_size=3), st.data())
def test_mutated_caches_decode_or_raise_bootstrap_error(
    cs: list[Contact], data: st.DataObject
) -> None:
    raw = bytearray(encode_cache(cs))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        result = decode_cache(bytes(raw))
    except BootstrapError:
        return
    assert len(result) <= len(cs)  # a mutation can drop a contact, never invent one
    assert all(isinstance(c, Contact) for c in result)


def test_cache_is_versioned_json() -> None:
    doc = json.loads(encode_cache(sample(2)))
    assert doc["version"] == 1
    assert doc["contacts"][0] == sample(2)[0].to_dict()


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"\xff\xfe", "UTF-8"),
        (b"{not json", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b"[]", "object with version"),
        (json.dumps({"version": 2, "contacts": []}).encode(), "version 2"),
        (json.dumps({"version": True, "contacts": []}).encode(), "version True"),
        (json.dumps({"version": 1, "contacts": {}}).encode(), "must be a list"),
        (json.dumps({"version": 1, "contacts": [], "x": 1}).encode(), "object with version"),
        (doc_with([1]), "contacts[0]: a contact must be an object"),
        (doc_with([{"name": "00"}]), "contacts[0]: a contact has exactly the keys"),
        (b" " * (MAX_CACHE_BYTES + 1), "over"),
    ],
)
def test_malformed_caches_say_what_is_wrong(data: bytes, says: str) -> None:
    with pytest.raises(BootstrapError, match=says.replace("[", r"\[").replace("]", r"\]")):
        decode_cache(data)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("name", "zz" * 32, "name is not hex"),
        ("name", "00" * 31, "name must be 64 hex"),
        ("public_key", 7, "public_key must be 64 hex"),
        ("address", ["example.com", 80], "not a literal IP"),
        ("address", ["10.0.0.1", 0], "port"),
        ("address", ["10.0.0.1", True], "port"),
        ("address", ["10.0.0.1"], r"\[host, port\]"),
    ],
)
def test_malformed_entries_name_the_field(field: str, value: object, says: str) -> None:
    entry = sample(1)[0].to_dict()
    entry[field] = value
    with pytest.raises(BootstrapError, match=says):
        decode_cache(doc_with([entry]))


def test_forged_and_duplicate_entries_are_dropped() -> None:
    good, other = sample(2)
    forged = good.to_dict() | {"public_key": other.public_key.hex()}  # name no longer BLAKE3(pk)
    assert decode_cache(doc_with([forged, good.to_dict(), good.to_dict()])) == [good]


def test_encode_caps_the_count() -> None:
    assert len(decode_cache(encode_cache(sample(10), limit=3))) == 3


def test_parse_contact_ipv4_and_ipv6() -> None:
    pk = Identity.generate().public_key
    c = parse_contact(f" 203.0.113.5:4000/{pk.hex().upper()}\n")
    assert c == Contact.of(pk, ("203.0.113.5", 4000))
    c6 = parse_contact(f"[2001:DB8::0001]:65535/{pk.hex()}")
    assert c6.address == ("2001:db8::1", 65535)
    assert parse_contact(format_contact(c6)) == c6
    assert format_contact(c) == f"203.0.113.5:4000/{pk.hex()}"


@given(contacts)
def test_format_parse_round_trip(c: Contact) -> None:
    assert parse_contact(format_contact(c)) == c


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("seed.example.org:4000/{pk}", "not a literal IP address .no DNS"),
        ("localhost:4000/{pk}", "no DNS"),
        ("::1:4000/{pk}", "not a literal IP|IPv6 goes in brackets"),
        ("[10.0.0.1]:4000/{pk}", "IPv6 goes in brackets"),
        ("10.0.0.1/{pk}", "HOST:PORT"),
        ("10.0.0.1:0/{pk}", "port"),
        ("0.0.0.0:4000/{pk}", "unspecified"),
        ("[::]:4000/{pk}", "unspecified"),
        ("10.0.0.1:65536/{pk}", "port"),
        ("10.0.0.1:+80/{pk}", "port"),
        ("10.0.0.1:٨٠/{pk}", "port"),
        ("[::1]/{pk}", "HOST:PORT"),
        ("10.0.0.1:4000", "HOST:PORT"),
        ("10.0.0.1:4000/abcd", "64 hex"),
        ("10.0.0.1:4000/{pk} extra", "64 hex"),
        ("x" * 300, "at most"),
    ],
)
def test_parse_contact_rejects(text: str, says: str) -> None:
    pk = "ab" * 32
    with pytest.raises(BootstrapError, match=says):
        parse_contact(text.format(pk=pk))


@given(st.text(max_size=120))
def test_any_text_parses_or_raises_bootstrap_error(text: str) -> None:
    try:
        contact = parse_contact(text)
    except BootstrapError:
        return
    assert parse_contact(format_contact(contact)) == contact


def test_bootstrap_error_is_a_routing_error() -> None:
    assert issubclass(BootstrapError, RoutingError)
    assert issubclass(BootstrapError, ValueError)


def test_save_and_load(tmp_path: Path) -> None:
    path = tmp_path / "bootstrap.json"
    assert load_cache(path) == []  # first run: no cache yet
    save_cache(path, sample(5))
    assert load_cache(path) == sample(5)
    save_cache(path, sample(2, seed=9))  # replaces, never appends
    assert load_cache(path) == sample(2, seed=9)
    assert os.listdir(tmp_path) == ["bootstrap.json"]  # no temporary file left behind


def test_failed_save_keeps_old_cache_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bootstrap.json"
    save_cache(path, sample(3))

    def crash(src: str, dst: object) -> None:
        assert Path(src).read_bytes() == encode_cache(sample(4))  # written in full first
        raise OSError("power cut before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        save_cache(path, sample(4))
    monkeypatch.undo()
    assert load_cache(path) == sample(3)
    assert os.listdir(tmp_path) == ["bootstrap.json"]


def test_load_rejects_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "bootstrap.json"
    path.write_bytes(b'{"version": 1, "contacts": [')
    with pytest.raises(BootstrapError):
        load_cache(path)
