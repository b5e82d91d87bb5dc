"""Docker hosts for testnets: this machine's daemon, or remote daemons reached over SSH.

A spec's ``hosts`` names each daemon as ``local`` or ``ssh://[user@]host[:port]``.
:func:`connect_hosts` prepares every SSH host in parallel (a thread per host) and reports
per host; one failed host never aborts the others.  For each host:

1. fabric connects (key from ``key_filename``, else ``$TROON_SSH_KEY``, else ssh-agent or
   ``~/.ssh``; an unknown host key is accepted for the session and not saved, fabric's
   default);
2. ``docker version`` on the host proves the CLI, the daemon and the user's permission on
   its socket, and gives the API version to speak;
3. the image is looked up on the host by ID (so a stale tag of the same name is not taken
   for it); when absent it is shipped without a registry: the local daemon's ``docker save``
   is streamed, gzip-compressed on the fly (level 1: ~2.6x smaller, cheap), into ``docker
   load`` on an SSH channel, in chunks (never the whole archive in memory), with a Rich
   progress bar of bytes;
4. a ``docker.DockerClient`` drives the host's daemon over the same SSH connection: each
   HTTP connection of the SDK is an SSH channel running ``docker system dial-stdio``, the
   transport of the SDK's own ``ssh://`` support.  The SDK's built-in transports were tried
   here and both work but read keys and known hosts only from ``~/.ssh`` (paramiko mode) or
   the ``ssh`` client's config (``use_ssh_client=True``), so they cannot use
   ``key_filename``; reusing fabric's authenticated connection can, and costs no second
   login.  At most :data:`SESSIONS` channels are open at once (sshd's ``MaxSessions``
   defaults to 10); further API calls wait for a free one.

Advertised address (``DockerHost.advertise_ip``): nodes on a remote host publish their
ports on the host and advertise ``advertise_ip:port``, so it must be an address that
containers on *other* hosts can reach.  It is the ``advertise`` given for the URL, else the
address the SSH connection reached (the URL's host when that is an IP literal); a host name
is resolved here, since node contacts are IP literals.  A loopback address is never reachable
from a container, and it only names a host that *is* this machine (e.g. the stand-in sshd
hosts of the tests, all driving one daemon); such a host advertises its daemon's default
bridge gateway (``docker0``, e.g. 172.17.0.1) instead: every container on that daemon,
whichever bridge network it is on, reaches the host through it and so reaches the ports
published there (verified here with UDP between containers on two user-defined bridges).

Invariants: every failure is a :class:`HostError` (or a ``{url: reason}`` entry) whose
message names the host and says what to do next; a host that fails is closed; nothing is
written to ``~/.ssh``.
"""

from __future__ import annotations

import getpass
import ipaddress
import itertools
import os
import shlex
import socket
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from testnet.errors import BackendError

if TYPE_CHECKING:
    import docker

LOCAL = "local"
KEY_ENV = "TROON_SSH_KEY"  # private key file used when no key_filename is given
DEFAULT_SSH_PORT = 22
CONNECT_TIMEOUT = 10.0  # seconds for the TCP connect + SSH handshake
COMMAND_TIMEOUT = 60.0  # seconds for a short remote command (docker version, inspect, tag)
DOCKER_TIMEOUT = 120  # seconds per Docker API call over SSH
SESSIONS = 8  # concurrent SSH channels for the Docker API (sshd's MaxSessions defaults to 10)
SESSION_WAIT = 300.0  # seconds an API call waits for a free channel before failing
SHIP_CHUNK = 1 << 20  # bytes per read of the local `docker save` stream
SHIP_STALL = 300.0  # seconds a shipping step may block (window full, slow load) before failing
GZIP_LEVEL = 1
MAX_WORKERS = 8  # hosts prepared at once


class HostError(BackendError):
    """A Docker host could not be reached or prepared; the message says what to do next."""


@dataclass
class DockerHost:
    """One Docker daemon a testnet places containers on."""

    name: str  # "local" or "user@host:port"
    url: str  # "local" or "ssh://user@host[:port]"
    client: docker.DockerClient  # the Docker SDK client driving that host's daemon
    advertise_ip: str | None  # address other hosts reach this host's published ports on;
    # None = local (containers talk over the bridge directly)


@dataclass(frozen=True)
class SshTarget:
    """A parsed ``ssh://user@host:port`` URL (the user defaults to the local user)."""

    user: str
    host: str  # a name or an IP literal, without IPv6 brackets
    port: int

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"ssh://{self.netloc}"


@dataclass(frozen=True)
class ShipReport:
    """An image shipped to a host: archive bytes read, bytes sent (gzip), time, load output."""

    image: str
    archive_bytes: int
    sent_bytes: int
    seconds: float
    loaded: tuple[str, ...]


@dataclass(frozen=True)
class HostReport:
    """How one host was prepared: ``image`` is ``present``, ``tagged`` or ``shipped``."""

    name: str
    url: str
    api_version: str
    image: str
    advertise_ip: str | None
    seconds: float
    ship: ShipReport | None = None


OnBytes = Callable[[int], None]
OnStage = Callable[[str], None]


# -- pure planning ----------------------------------------------------------------------------


def parse_ssh_url(url: str, *, default_user: str | None = None) -> SshTarget:
    """Parse ``ssh://[user@]host[:port]``; raises :class:`HostError` naming what is wrong."""
    hint = "write it as ssh://USER@HOST[:PORT]"
    if not isinstance(url, str) or not url.startswith("ssh://"):
        raise HostError(f"host {url!r}: not an ssh:// URL; {hint} (or `local`)")
    parts = urlsplit(url)
    try:
        port = parts.port or DEFAULT_SSH_PORT
    except ValueError:
        raise HostError(f"host {url!r}: the port must be 1..65535; {hint}") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise HostError(f"host {url!r}: no path, query or fragment allowed; {hint}")
    if parts.password is not None:
        raise HostError(f"host {url!r}: no password in the URL; use an SSH key or ssh-agent")
    if not parts.hostname or not 1 <= port <= 65535:
        raise HostError(f"host {url!r}: names no host or a bad port; {hint}")
    user = parts.username or default_user or getpass.getuser()
    return SshTarget(user, parts.hostname, port)


def docker_problem(target: SshTarget, exit_code: int, output: str) -> str | None:
    """Why ``docker version`` failed on ``target`` and what to do, or None when it worked."""
    text = output.strip()
    lower = text.lower()
    where = target.netloc
    if exit_code == 0 and _is_api_version(text):
        return None
    if exit_code == 127 or "command not found" in lower or "docker: not found" in lower:
        return f"no docker CLI on {where}: install Docker Engine there (docker.io or docker-ce)"
    if "permission denied" in lower:
        return (
            f"{target.user} may not use Docker on {target.host} (permission denied on the "
            f"daemon socket): add the user to the docker group (`usermod -aG docker "
            f"{target.user}`, then log in again) or connect as root"
        )
    if "cannot connect to the docker daemon" in lower or "daemon running" in lower:
        return f"the Docker daemon on {where} is not running: start it (`systemctl start docker`)"
    last = text.splitlines()[-1] if text else "no output"
    return f"`docker version` failed on {where} (exit {exit_code}): {last}"


def _is_api_version(text: str) -> bool:
    major, dot, minor = text.partition(".")
    return bool(dot) and major.isdigit() and minor.isdigit()


def api_version_to_use(server: str, client_default: str) -> str:
    """The older of the server's API version and the SDK's own default."""

    def key(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in v.split("."))

    return server if key(server) <= key(client_default) else client_default


def is_loopback(address: str) -> bool:
    """True for an IP literal in 127.0.0.0/8 or ::1 (a name is never loopback here)."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def advertise_choice(override: str | None, reached: str) -> str | None:
    """The address to advertise before loopback handling: the override, else the address
    the SSH connection reached.  ``None`` means "ask the daemon for its bridge gateway"."""
    chosen = override or reached
    return None if is_loopback(chosen) else chosen


def loaded_names(output: str) -> tuple[str, ...]:
    """The images named by ``docker load`` output (``Loaded image: X`` / ``... ID: X``)."""
    names = []
    for line in output.splitlines():
        head, sep, name = line.partition(": ")
        if sep and head.strip() in ("Loaded image", "Loaded image ID"):
            names.append(name.strip())
    return tuple(names)


# -- local daemon -----------------------------------------------------------------------------


def local_host() -> DockerHost:
    """The local daemon (``DOCKER_HOST`` or the unix socket) as a :class:`DockerHost`."""
    from testnet.image import ImageError, docker_client

    try:
        client = docker_client()
    except ImageError as exc:
        raise HostError(str(exc)) from exc
    return DockerHost(LOCAL, LOCAL, client, None)


def _local_image_id(client: Any, image: str) -> str:
    import docker.errors

    try:
        return str(client.images.get(image).id)
    except docker.errors.ImageNotFound:
        raise HostError(
            f"image {image!r} is not in the local Docker daemon: run `troon image build` "
            "(it is shipped to SSH hosts from here)"
        ) from None
    except docker.errors.DockerException as exc:
        raise HostError(f"cannot inspect image {image!r} locally: {exc}") from exc


# -- one SSH host ------------------------------------------------------------------------------


def open_ssh(target: SshTarget, *, key_filename: str | None = None) -> Any:
    """A connected ``fabric.Connection``; raises :class:`HostError` saying what to fix."""
    import fabric
    import paramiko  # type: ignore[import-untyped]

    kwargs: dict[str, Any] = {"banner_timeout": CONNECT_TIMEOUT, "auth_timeout": CONNECT_TIMEOUT}
    key_filename = key_filename or os.environ.get(KEY_ENV) or None
    if key_filename is not None:
        if not os.path.isfile(key_filename):
            raise HostError(f"SSH key {key_filename!r} (for {target.netloc}) is not a file")
        kwargs["key_filename"] = key_filename
    conn = fabric.Connection(
        target.host,
        user=target.user,
        port=target.port,
        connect_timeout=CONNECT_TIMEOUT,
        connect_kwargs=kwargs,
    )
    where = target.netloc
    try:
        conn.open()
    except paramiko.AuthenticationException as exc:
        conn.close()
        raise HostError(
            f"SSH login to {where} refused ({exc}): name the key (key_filename or "
            f"${KEY_ENV}), load it into ssh-agent, or add it to {target.user}'s "
            "authorized_keys there"
        ) from exc
    except paramiko.BadHostKeyException as exc:
        conn.close()
        raise HostError(
            f"the SSH host key of {where} does not match known_hosts: if the host was "
            f"reinstalled, remove its old entry (`ssh-keygen -R {target.host}`)"
        ) from exc
    except (OSError, paramiko.SSHException, EOFError) as exc:
        conn.close()
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise HostError(
            f"cannot reach {where} over SSH ({reason}): check that sshd runs there, the "
            "address and port are right and no firewall is in the way"
        ) from exc
    return conn


def _run(conn: Any, command: str) -> tuple[int, str]:
    """Run a short command on the host: (exit code, stdout + stderr)."""
    import paramiko
    from invoke.exceptions import CommandTimedOut

    try:
        result = conn.run(
            command, hide=True, warn=True, in_stream=False, pty=False, timeout=COMMAND_TIMEOUT
        )
    except CommandTimedOut:
        raise HostError(
            f"`{' '.join(command.split()[:2])}` on {conn.host} took more than "
            f"{COMMAND_TIMEOUT:.0f} s; is its Docker daemon hung? (`systemctl status docker`)"
        ) from None
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise HostError(f"the SSH connection to {conn.host} broke ({exc}); retry") from exc
    return int(result.exited), str(result.stdout) + str(result.stderr)


def check_docker(conn: Any, target: SshTarget) -> str:
    """The host daemon's API version; :class:`HostError` when Docker is unusable there."""
    code, out = _run(conn, "docker version --format '{{.Server.APIVersion}}'")
    problem = docker_problem(target, code, out)
    if problem is not None:
        raise HostError(problem)
    return out.strip()


def remote_image_id(conn: Any, ref: str) -> str | None:
    """The ID of image ``ref`` on the host, or None when it has no such image."""
    code, out = _run(conn, f"docker image inspect --format '{{{{.Id}}}}' {shlex.quote(ref)}")
    return out.strip() if code == 0 and out.strip().startswith("sha256:") else None


def ensure_image(
    conn: Any,
    target: SshTarget,
    local: Any,
    image: str,
    image_id: str,
    *,
    on_bytes: OnBytes | None = None,
    total: Callable[[int], None] | None = None,
) -> tuple[str, ShipReport | None]:
    """Make ``image`` (local ID ``image_id``) present on the host; ``present``, ``tagged``
    (the ID was there under another name) or ``shipped``."""
    is_id = image == image_id or image_id.removeprefix("sha256:").startswith(image)
    if remote_image_id(conn, image_id) is not None:
        if is_id or remote_image_id(conn, image) == image_id:
            return "present", None
        code, out = _run(conn, f"docker tag {image_id} {shlex.quote(image)}")
        if code != 0:
            raise HostError(f"`docker tag {image}` failed on {target.netloc}: {out.strip()}")
        return "tagged", None
    if total is not None:
        total(int(local.images.get(image_id).attrs.get("Size", 0)))
    report = ship_image(conn, target, local, image, on_bytes=on_bytes)
    if remote_image_id(conn, image_id) is None:
        raise HostError(
            f"`docker load` on {target.netloc} finished but image {image_id[:19]} is not "
            f"there (it reported {', '.join(report.loaded) or 'nothing'}); retry"
        )
    return "shipped", report


def ship_image(
    conn: Any, target: SshTarget, local: Any, image: str, *, on_bytes: OnBytes | None = None
) -> ShipReport:
    """Stream the local ``docker save IMAGE`` into ``docker load`` on the host (gzip, level
    :data:`GZIP_LEVEL`), :data:`SHIP_CHUNK` bytes at a time; ``on_bytes`` gets archive bytes.

    ``image`` is saved by the name given, so a tag travels with it (an ID travels untagged).
    """
    import docker.errors
    import paramiko

    started = time.monotonic()
    chan = conn.client.get_transport().open_session()
    chan.settimeout(SHIP_STALL)
    chan.set_combine_stderr(True)
    chan.exec_command("docker load")
    packer = zlib.compressobj(GZIP_LEVEL, wbits=31)  # 31: gzip framing, which docker load reads
    archive = sent = 0
    with closing(chan):
        try:
            stream = local.api.get_image(image, chunk_size=SHIP_CHUNK)
            for chunk in stream:
                archive += len(chunk)
                sent += _send(chan, packer.compress(chunk))
                if on_bytes is not None:
                    on_bytes(len(chunk))
            sent += _send(chan, packer.flush())
            chan.shutdown_write()
        except docker.errors.DockerException as exc:
            raise HostError(f"local `docker save {image}` failed: {exc}") from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:  # docker load died, link lost
            output = _drain(chan)
            raise HostError(
                f"shipping {image} to {target.netloc} broke after {archive} bytes ({exc}); "
                f"`docker load` said: {output.strip()[-300:] or 'nothing'}; check the "
                "host's free disk space and retry"
            ) from exc
        output = _drain(chan)
        code = chan.recv_exit_status()
    if code != 0:
        raise HostError(
            f"`docker load` on {target.netloc} failed (exit {code}): {output.strip()[-300:]}; "
            "check the host's free disk space and Docker daemon log"
        )
    seconds = time.monotonic() - started
    return ShipReport(image, archive, sent, seconds, loaded_names(output))


def _send(chan: Any, data: bytes) -> int:
    if data:
        chan.sendall(data)
    return len(data)


def _drain(chan: Any) -> str:
    """Everything the remote command wrote until EOF (it is small: docker load's summary)."""
    parts = []
    with suppress(OSError):
        while chunk := chan.recv(65536):
            parts.append(chunk)
    return b"".join(parts).decode(errors="replace")


def ssh_docker_client(conn: Any, target: SshTarget, api_version: str) -> Any:
    """A ``docker.DockerClient`` whose HTTP connections are channels of ``conn``."""
    import docker
    import docker.constants

    version = api_version_to_use(api_version, docker.constants.DEFAULT_DOCKER_API_VERSION)
    # use_ssh_client=True builds the SDK's lazy adapter (it dials nothing); ours replaces it
    client = docker.DockerClient(
        base_url=target.url, use_ssh_client=True, version=version, timeout=DOCKER_TIMEOUT
    )
    client.api.mount("http+docker://ssh", _channel_adapter(conn.client, target.url))
    return client


def _channel_adapter(ssh_client: Any, url: str) -> Any:
    from docker.transport.sshconn import SSHConnectionPool, SSHHTTPAdapter

    class ChannelPool(SSHConnectionPool):  # type: ignore[misc]
        """At most SESSIONS channels; callers beyond that wait (blocking pool)."""

        def __init__(self) -> None:
            super().__init__(ssh_client=ssh_client, timeout=DOCKER_TIMEOUT, maxsize=SESSIONS)
            self.block = True

        def _get_conn(self, timeout: float | None = None) -> Any:
            return super()._get_conn(SESSION_WAIT if timeout is None else timeout)

    class ChannelAdapter(SSHHTTPAdapter):  # type: ignore[misc]
        """One pool for every URL (the SDK keys pools by URL), over an open connection."""

        def __init__(self) -> None:
            super().__init__(url, timeout=DOCKER_TIMEOUT, max_pool_size=SESSIONS, shell_out=True)
            self.ssh_client = ssh_client  # close() closes it

        def get_connection(self, url: str, proxies: Any = None) -> Any:
            with self.pools.lock:
                pool = self.pools.get("channels")
                if pool is None:
                    pool = self.pools["channels"] = ChannelPool()
            return pool

    return ChannelAdapter()


def bridge_gateway(conn: Any, client: Any, where: str) -> str:
    """The IPv4 address of the daemon's default bridge (``docker0``) on the host: read from
    the interface itself (``ip addr``), else the network's IPAM gateway."""
    import docker.errors

    hint = "give the host an `advertise:` address its containers can reach"
    try:
        attrs = client.networks.get("bridge").attrs
    except docker.errors.DockerException as exc:
        raise HostError(f"{where} has no default bridge network ({exc}); {hint}") from exc
    device = (attrs.get("Options") or {}).get("com.docker.network.bridge.name", "docker0")
    code, out = _run(conn, f"ip -4 -o addr show dev {shlex.quote(device)}")
    found = bridge_address(out) if code == 0 else None
    for config in (attrs.get("IPAM") or {}).get("Config") or []:
        found = found or config.get("Gateway")
    if not found or ipaddress.ip_address(found).version != 4:
        raise HostError(f"{where}: cannot find the IPv4 address of {device}; {hint}")
    return str(found)


def bridge_address(ip_addr_output: str) -> str | None:
    """The first ``inet A.B.C.D/N`` address in ``ip -4 -o addr show`` output."""
    words = ip_addr_output.split()
    for word, value in itertools.pairwise(words):
        if word == "inet":
            return value.partition("/")[0]
    return None


def resolve_ip(address: str, where: str) -> str:
    """``address`` as an IP literal (a name is resolved here, IPv4 first)."""
    with suppress(ValueError):
        return str(ipaddress.ip_address(address))
    try:
        infos = socket.getaddrinfo(address, None, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise HostError(
            f"{where}: cannot resolve advertise address {address!r} ({exc}); give an IP"
        ) from exc
    ips = sorted({str(info[4][0]) for info in infos}, key=lambda ip: ":" in ip)
    return ips[0]


def connect_host(
    url: str,
    *,
    image: str,
    image_id: str | None,
    local: Any,
    key_filename: str | None = None,
    advertise: str | None = None,
    on_stage: OnStage | None = None,
    on_bytes: OnBytes | None = None,
    on_total: Callable[[int], None] | None = None,
) -> tuple[DockerHost, HostReport]:
    """Prepare one host (see the module docstring); raises :class:`HostError`."""
    stage = on_stage or (lambda _text: None)
    started = time.monotonic()
    if url == LOCAL:
        host = local_host()
        with _closing_on_error(host.client):
            _local_image_id(host.client, image)
        return host, HostReport(LOCAL, LOCAL, host.client.api.api_version, "present", None, 0.0)
    target = parse_ssh_url(url)
    stage("connecting")
    conn = open_ssh(target, key_filename=key_filename)
    with _closing_on_error(conn):
        stage("checking docker")
        api = check_docker(conn, target)
        stage("checking image")
        if image_id is None:
            if remote_image_id(conn, image) is None:
                raise HostError(
                    f"image {image!r} is not on {target.netloc} and there is no local "
                    "Docker daemon to ship it from: run `troon image build` here"
                )
            state, ship = "present", None
        else:
            state, ship = ensure_image(
                conn, target, local, image, image_id, on_bytes=on_bytes, total=on_total
            )
        stage("docker API over ssh")
        client = ssh_docker_client(conn, target, api)
        with _closing_on_error(client):
            _ping(client, target)
            reached = str(conn.client.get_transport().getpeername()[0])
            chosen = advertise_choice(
                None if advertise is None else resolve_ip(advertise, target.netloc), reached
            )
            ip = chosen if chosen is not None else bridge_gateway(conn, client, target.netloc)
    seconds = time.monotonic() - started
    report = HostReport(target.netloc, url, api, state, ip, seconds, ship)
    return DockerHost(target.netloc, url, client, ip), report  # url as given: the spec's key


def _ping(client: Any, target: SshTarget) -> None:
    import docker.errors
    import requests

    try:
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise HostError(
            f"the Docker API over SSH to {target.netloc} failed ({exc}): `docker system "
            "dial-stdio` must work there (Docker CLI >= 18.09)"
        ) from exc


class _closing_on_error:
    """Close ``thing`` if the block raises (a failed host leaves no connection open)."""

    def __init__(self, thing: Any) -> None:
        self._thing = thing

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            with suppress(Exception):
                self._thing.close()


# -- many hosts --------------------------------------------------------------------------------


def connect_hosts(
    urls: Sequence[str],
    *,
    image: str,
    console: Console | None = None,
    key_filename: str | None = None,
    advertise: Mapping[str, str] | None = None,
) -> tuple[list[DockerHost], dict[str, str]]:
    """Connect to every host in parallel; the ready ones (in ``urls`` order) and
    ``{url: reason}`` for the others.  One failed host never aborts the others.

    ``advertise`` maps a URL to the address its published ports are reached on (see the
    module docstring for the default).
    """
    hosts, failed, _reports = connect_hosts_report(
        urls, image=image, console=console, key_filename=key_filename, advertise=advertise
    )
    return hosts, failed


def connect_hosts_report(
    urls: Sequence[str],
    *,
    image: str,
    console: Console | None = None,
    key_filename: str | None = None,
    advertise: Mapping[str, str] | None = None,
) -> tuple[list[DockerHost], dict[str, str], list[HostReport]]:
    """:func:`connect_hosts` plus a :class:`HostReport` per ready host."""
    if len(set(urls)) != len(urls):
        raise HostError(f"hosts are listed twice: {sorted({u for u in urls if urls.count(u) > 1})}")
    local, image_id = _local_source(urls, image)
    advertise = advertise or {}
    results: dict[str, tuple[DockerHost, HostReport] | str] = {}
    try:
        with (
            _HostBars(console) as bars,
            ThreadPoolExecutor(max_workers=max(1, min(MAX_WORKERS, len(urls)))) as pool,
        ):

            def one(url: str) -> None:
                bar = bars.add(url)
                try:
                    results[url] = connect_host(
                        url,
                        image=image,
                        image_id=image_id,
                        local=local,
                        key_filename=key_filename,
                        advertise=advertise.get(url),
                        on_stage=bar.stage,
                        on_bytes=bar.advance,
                        on_total=bar.total,
                    )
                    bar.stage("[green]ready[/]")
                except HostError as exc:
                    results[url] = str(exc)
                    bar.stage("[red]failed[/]")
                except Exception as exc:  # a host must never abort the others
                    results[url] = f"unexpected {type(exc).__name__} preparing {url}: {exc}"
                    bar.stage("[red]failed[/]")

            list(pool.map(one, urls))
    finally:
        if local is not None:
            local.close()
    hosts = [r[0] for u in urls if not isinstance(r := results[u], str)]
    reports = [r[1] for u in urls if not isinstance(r := results[u], str)]
    failed = {u: r for u in urls if isinstance(r := results[u], str)}
    if console is not None:
        _print_summary(console, reports, failed)
    return hosts, failed, reports


def _local_source(urls: Sequence[str], image: str) -> tuple[Any, str | None]:
    """The local daemon and the image's ID there, when any SSH host may need shipping.

    Without a local daemon the hosts must already hold ``image`` by name."""
    if all(u == LOCAL for u in urls):
        return None, None
    try:
        local = local_host().client
    except HostError:
        return None, None
    with _closing_on_error(local):
        return local, _local_image_id(local, image)


def _print_summary(console: Console, reports: list[HostReport], failed: dict[str, str]) -> None:
    for r in reports:
        image = r.image
        if r.ship is not None:
            mb = r.ship.archive_bytes / 1e6
            image = f"shipped {mb:.0f} MB ({r.ship.sent_bytes / 1e6:.0f} MB sent) in "
            image += f"{r.ship.seconds:.1f} s"
        where = r.advertise_ip or "bridge"
        console.print(
            f"[green]ready[/]  {r.name}: Docker API {r.api_version}, image {image}, "
            f"advertises {where} ({r.seconds:.1f} s)",
            highlight=False,
        )
    for url, reason in failed.items():
        console.print(f"[red]failed[/] {url}: {reason}", highlight=False)


class _HostBar:
    def __init__(self, progress: Progress | None, task: TaskID | None, label: str) -> None:
        self._progress, self._task, self._label = progress, task, label

    def stage(self, text: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=f"{self._label} {text}")

    def total(self, size: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=size, description=f"{self._label} shipping")

    def advance(self, size: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=size)


class _HostBars:
    """One Rich progress row per host: its stage and the image bytes shipped."""

    def __init__(self, console: Console | None) -> None:
        self._progress: Progress | None = None
        if console is not None:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeElapsedColumn(),
                console=console,
            )

    def __enter__(self) -> _HostBars:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def add(self, url: str) -> _HostBar:
        label = url.removeprefix("ssh://")
        if self._progress is None:
            return _HostBar(None, None, label)
        task = self._progress.add_task(f"{label} waiting", total=None)
        return _HostBar(self._progress, task, label)


def close_hosts(hosts: Sequence[DockerHost]) -> None:
    """Close every host's client (and so its SSH connection)."""
    for host in hosts:
        with suppress(Exception):
            host.client.close()
