"""Build the node image (``troon-node``) on hosts with or without a container registry.

``build_image`` is an adapter: subprocess for ``debootstrap``/``pip``/``tar``, the Docker SDK
for every Docker operation.  Steps:

1. Base image: ``base`` if given; else ``python:3.11-slim`` if present or pullable; else a
   cached ``troon-base:<suite>``; else one is made: ``debootstrap --variant=minbase`` of the
   host's own Debian suite from the mirror in the host's apt configuration, with python3 and
   python3-venv, ``docker import``-ed as ``troon-base:<suite>``.
2. Wheelhouse on the host: ``pip wheel`` of the project and all its dependencies, for the
   base image's Python (it must match the host's major.minor).
3. ``docker build`` of the top-level Dockerfile with context = Dockerfile + wheelhouse and
   build arg ``BASE_IMAGE``; the build needs no network inside the build container.

Invariants: no mirror host is hard-coded (it is read from /etc/apt); nothing is written into
the source checkout (the project is built from a temporary copy); every failure is an
:class:`ImageError` whose message says what to do next.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.status import Status

from testnet.errors import TestnetError

DEFAULT_TAG = "troon-node:latest"
DEFAULT_BASE = "python:3.11-slim"
BASE_REPO = "troon-base"
BASE_PACKAGES = ("python3", "python3-venv")
REPRODUCIBLE_EPOCH = "315532800"  # 1980-01-01: same sources -> same wheel bytes -> build cache
SOURCE_ITEMS = ("pyproject.toml", "README.md", "node", "testnet", "console")
PRUNE = ("usr/share/doc", "usr/share/man", "usr/share/info", "var/cache/apt", "var/lib/apt/lists")
APT_DIR = Path("/etc/apt")
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
LOG_TAIL = 15


class ImageError(TestnetError):
    """The node image could not be built; the message says why and what to do next."""


@dataclass(frozen=True)
class AptSource:
    """One ``deb`` entry of the host's apt configuration."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


# -- the host's apt configuration -------------------------------------------------------------


def host_suite(os_release: Path = Path("/etc/os-release")) -> str:
    """The host's Debian codename (``bookworm``), from VERSION_CODENAME."""
    try:
        text = os_release.read_text()
    except OSError as exc:
        raise ImageError(f"cannot read {os_release}: {exc.strerror}; pass base=IMAGE") from exc
    match = re.search(r"^VERSION_CODENAME=\"?([a-z]+)\"?$", text, re.MULTILINE)
    if match is None:
        raise ImageError(f"{os_release} names no VERSION_CODENAME; pass base=IMAGE instead")
    return match.group(1)


def apt_sources(apt_dir: Path = APT_DIR) -> list[AptSource]:
    """Every enabled ``deb`` entry in sources.list, sources.list.d/*.list and *.sources."""
    found = _one_line_sources(apt_dir / "sources.list")
    parts = apt_dir / "sources.list.d"
    for path in sorted(parts.glob("*.list")) if parts.is_dir() else []:
        found += _one_line_sources(path)
    for path in sorted(parts.glob("*.sources")) if parts.is_dir() else []:
        found += _deb822_sources(path)
    return found


def _one_line_sources(path: Path) -> list[AptSource]:
    if not path.is_file():
        return []
    found = []
    for raw in path.read_text().splitlines():
        words = re.sub(r"\[[^]]*\]", " ", raw.split("#", 1)[0]).split()  # drop [options]
        if len(words) >= 3 and words[0] == "deb":
            found.append(AptSource(words[1], (words[2],), tuple(words[3:])))
    return found


def _deb822_sources(path: Path) -> list[AptSource]:
    found = []
    for stanza in re.split(r"\n\s*\n", path.read_text()):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled") == "no":
            continue
        suites, components = fields.get("suites", "").split(), fields.get("components", "")
        for uri in fields.get("uris", "").split():
            found.append(AptSource(uri, tuple(suites), tuple(components.split())))
    return found


def mirror_for(suite: str, sources: list[AptSource]) -> str:
    """The first configured mirror that serves ``suite`` itself (not -updates/-security)."""
    for source in sources:
        if suite in source.suites:
            return source.uri
    raise ImageError(
        f"no apt source in {APT_DIR} serves suite {suite!r}; add a Debian mirror there "
        "or pass base=IMAGE (an image with python3.11 and venv)"
    )


# -- the base image ---------------------------------------------------------------------------


def daemon_problem() -> str | None:
    """Why the local Docker daemon's unix socket cannot be reached, or None.

    Probed with a plain socket first: docker-py leaks its socket when the connect fails.
    """
    host = os.environ.get("DOCKER_HOST", DEFAULT_DOCKER_HOST)
    if not host.startswith("unix://"):
        return None  # tcp/ssh hosts: the SDK's own ping reports
    path = host.removeprefix("unix://")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError as exc:
            return f"cannot connect to {path}: {exc.strerror}"
    return None


def docker_client() -> Any:
    """A Docker SDK client for the daemon, or an ImageError saying how to get one."""
    import docker
    import docker.errors

    problem = daemon_problem()
    if problem is not None:
        raise ImageError(f"no Docker daemon ({problem}); start dockerd or set DOCKER_HOST")
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        raise ImageError(f"no Docker daemon ({exc}); start dockerd or set DOCKER_HOST") from exc
    return client


def _has_image(client: Any, name: str) -> bool:
    import docker.errors

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def _try_pull(client: Any, name: str) -> bool:
    import docker.errors

    try:
        client.images.pull(name)
    except docker.errors.DockerException:
        return False
    return True


def ensure_base(client: Any, base: str | None, status: Status | None) -> str:
    """The base image to build on, made with debootstrap when none can be had."""
    if base is not None:
        if _has_image(client, base) or _try_pull(client, base):
            return base
        raise ImageError(f"base image {base!r} is absent and cannot be pulled; load it first")
    suite = host_suite()
    cached = f"{BASE_REPO}:{suite}"
    for name in (DEFAULT_BASE, cached):
        if _has_image(client, name):
            return name
    _say(status, f"pulling {DEFAULT_BASE}")
    if _try_pull(client, DEFAULT_BASE):
        return DEFAULT_BASE
    debootstrap_base(client, suite, mirror_for(suite, apt_sources()), status)
    return cached


def ensure_debootstrap(status: Status | None) -> str:
    """The debootstrap executable, installed with apt-get when missing."""
    found = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
    if found:
        return found
    if os.geteuid() != 0:
        raise ImageError("debootstrap is missing: run `apt-get install debootstrap` as root")
    _say(status, "installing debootstrap (apt-get)")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "debootstrap"]
    if _run(install, check=False).returncode != 0:
        _run(["apt-get", "update"])
        _run(install)
    return ensure_debootstrap(None)


def debootstrap_base(client: Any, suite: str, mirror: str, status: Status | None) -> str:
    """Debootstrap a minbase ``suite`` rootfs with Python and import it as troon-base:<suite>."""
    if os.geteuid() != 0:
        raise ImageError("making a base image needs root (debootstrap); rerun as root")
    tool = ensure_debootstrap(status)
    with tempfile.TemporaryDirectory(prefix="troon-base-") as tmp:
        root, tarball = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
        _say(status, f"debootstrap {suite} from {mirror} (about a minute)")
        include = "--include=" + ",".join(BASE_PACKAGES)
        try:
            _run([tool, "--variant=minbase", include, suite, str(root), mirror])
        finally:
            _unmount_below(root)
        for rel in PRUNE:
            shutil.rmtree(root / rel, ignore_errors=True)
        _say(status, f"importing {BASE_REPO}:{suite} into Docker")
        _run(["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(tarball), "."])
        changes = ["ENV LANG=C.UTF-8", 'CMD ["python3"]']
        client.api.import_image_from_file(
            str(tarball), repository=BASE_REPO, tag=suite, changes=changes
        )
    return f"{BASE_REPO}:{suite}"


def _unmount_below(root: Path) -> None:
    """Best effort: a failed debootstrap can leave /proc or /sys mounted inside ``root``."""
    prefix = str(root.resolve()) + "/"
    with open("/proc/mounts") as mounts:
        targets = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for target in sorted(targets, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


def image_python(client: Any, image: str) -> str:
    """``major.minor`` of the image's ``python3``."""
    import docker.errors

    probe = ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
    try:
        out = client.containers.run(image, probe, remove=True, network_disabled=True)
    except docker.errors.DockerException as exc:
        raise ImageError(f"base image {image!r} has no working python3: {exc}") from exc
    return bytes(out).decode().strip()


# -- wheelhouse and build ---------------------------------------------------------------------


def source_root() -> Path:
    """The source checkout holding the Dockerfile and pyproject.toml."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "Dockerfile").is_file() or not (root / "pyproject.toml").is_file():
        raise ImageError(f"{root} is not a troon source checkout (no Dockerfile/pyproject.toml)")
    return root


def build_wheelhouse(repo: Path, dest: Path, status: Status | None) -> None:
    """``pip wheel`` the project (from a clean copy) and all its dependencies into ``dest``."""
    with tempfile.TemporaryDirectory(prefix="troon-src-") as tmp:
        src = Path(tmp) / "troon"
        src.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        for item in SOURCE_ITEMS:
            path = repo / item
            if path.is_dir():
                shutil.copytree(path, src / item, ignore=ignore)
            elif path.is_file():
                shutil.copy2(path, src / item)
        _say(status, "building the wheelhouse (pip wheel: project + dependencies)")
        env = {**os.environ, "SOURCE_DATE_EPOCH": REPRODUCIBLE_EPOCH}
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", str(src), "-w", str(dest)], env=env)


def build_context(repo: Path, wheelhouse: Path) -> io.BytesIO:
    """A tar build context: the Dockerfile and ``wheelhouse/``, with fixed mtimes and owners."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add(tar, repo / "Dockerfile", "Dockerfile")
        _add(tar, wheelhouse, "wheelhouse")
        for wheel in sorted(wheelhouse.iterdir()):
            _add(tar, wheel, f"wheelhouse/{wheel.name}")
    buf.seek(0)
    return buf


def _add(tar: tarfile.TarFile, path: Path, name: str) -> None:
    info = tar.gettarinfo(str(path), arcname=name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if info.isfile():
        with path.open("rb") as fh:
            tar.addfile(info, fh)
    else:
        tar.addfile(info)


def docker_build(
    client: Any, context: io.BytesIO, tag: str, base: str, status: Status | None
) -> str:
    """Run ``docker build`` through the SDK, streaming steps to ``status``; returns the id."""
    stream = client.api.build(
        fileobj=context,
        custom_context=True,
        tag=tag,
        buildargs={"BASE_IMAGE": base},
        rm=True,
        forcerm=True,
        pull=False,
        decode=True,
    )
    tail: list[str] = []
    for chunk in stream:
        if "error" in chunk:
            detail = "\n".join(tail[-LOG_TAIL:])
            raise ImageError(f"docker build failed: {chunk['error'].strip()}\n{detail}")
        line = str(chunk.get("stream", "")).strip()
        if line:
            tail.append(line)
            if line.startswith("Step "):
                _say(status, f"docker build {tag}: {line[:90]}")
    return str(client.images.get(tag).id)


def _image_id(client: Any, name: str) -> str | None:
    return str(client.images.get(name).id) if _has_image(client, name) else None


def _drop_stale(client: Any, old: str | None) -> None:
    """Remove the image this build replaced and all but the newest install-stage image (the
    next build's cache); an image still used by a container is left alone."""
    import docker.errors

    stages = client.images.list(filters={"dangling": True, "label": "troon.stage=install"})
    stages.sort(key=lambda image: str(image.attrs["Created"]), reverse=True)
    for stale in [*([old] if old else []), *(image.id for image in stages[1:])]:
        with suppress(docker.errors.APIError):
            client.images.remove(stale)


def build_image(
    tag: str = DEFAULT_TAG, *, base: str | None = None, console: Console | None = None
) -> str:
    """Build the node image ``tag`` and return its id (``sha256:...``).

    ``base`` names the base image; by default ``python:3.11-slim`` when present or pullable,
    else a ``troon-base:<suite>`` made (once, then reused) with debootstrap.
    """
    repo = source_root()
    client = docker_client()
    with closing(client), _status(console, "preparing the base image") as status:
        chosen = ensure_base(client, base, status)
        have = image_python(client, chosen)
        host = "{}.{}".format(*sys.version_info[:2])
        if have != host:
            raise ImageError(
                f"{chosen} has Python {have} but this host runs {host}; the wheelhouse must "
                f"match: run with a Python {have} or pass base=IMAGE with Python {host}"
            )
        with tempfile.TemporaryDirectory(prefix="troon-wheels-") as tmp:
            build_wheelhouse(repo, Path(tmp), status)
            context = build_context(repo, Path(tmp))
        _say(status, f"docker build {tag} FROM {chosen}")
        old = _image_id(client, tag)
        image_id = docker_build(client, context, tag, chosen, status)
        _drop_stale(client, old if old != image_id else None)
    if console is not None:
        console.print(f"[green]built[/] {tag} ({image_id[:19]}) from {chosen}")
    return image_id


# -- helpers and CLI ---------------------------------------------------------------------------


@contextmanager
def _status(console: Console | None, text: str) -> Iterator[Status | None]:
    cm = console.status(text) if console is not None else nullcontext()
    with cm as status:
        yield status


def _say(status: Status | None, text: str) -> None:
    if status is not None:
        status.update(text)


def _run(
    cmd: list[str], *, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    except OSError as exc:
        raise ImageError(f"cannot run {cmd[0]}: {exc.strerror}; is it installed?") from exc
    if check and done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-LOG_TAIL:])
        raise ImageError(f"`{' '.join(cmd[:3])} ...` failed (exit {done.returncode}):\n{tail}")
    return done


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``troon image build`` to the top-level parser."""
    group = sub.add_parser("image", help="build the node container image")
    cmds = group.add_subparsers(dest="image_cmd", required=True, metavar="COMMAND")
    build = cmds.add_parser("build", help="build troon-node (debootstraps a base if none)")
    build.add_argument("--tag", default=DEFAULT_TAG, help=f"image tag (default {DEFAULT_TAG})")
    build.add_argument("--base", help="base image with python3.11 + venv (default: automatic)")
    build.set_defaults(func=cmd_build)


def cmd_build(args: argparse.Namespace) -> int:
    """``troon image build``: exit 0 when built, 2 with one line on stderr when not."""
    try:
        build_image(args.tag, base=args.base, console=Console())
    except ImageError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc}", highlight=False)
        return 2
    return 0
