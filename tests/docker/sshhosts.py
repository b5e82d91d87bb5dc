"""Stand-in SSH hosts for the multi-host tests: real sshd processes on loopback addresses.

Each stand-in is Debian's OpenSSH server (``/usr/sbin/sshd -D -e -f CONFIG``) listening on
its own loopback address (127.0.0.2, 127.0.0.3, ...) and a free port, with a throwaway host
key, a throwaway client key in ``authorized_keys``, root login by key only and no PAM.  A
session there runs this machine's ``docker`` CLI against this machine's daemon, so the SSH
path (fabric, ``docker load`` over a channel, the Docker SDK over ``docker system
dial-stdio``) is exercised for real while every stand-in drives the same daemon.

Everything lives in one temporary folder and dies with :meth:`SshHosts.close`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")  # sshd's compiled-in privilege separation directory
START_TIMEOUT = 10.0

CONFIG = """\
ListenAddress {address}:{port}
HostKey {tmp}/host_ed25519
AuthorizedKeysFile {tmp}/authorized_keys
PidFile none
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
LogLevel ERROR
"""


class SshdMissing(Exception):
    """openssh-server is not installed (``apt-get install -y openssh-server``)."""


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


class SshHosts:
    """sshd stand-ins on ``addresses``; ``urls`` and ``key`` are what a client needs."""

    def __init__(self, addresses: list[str]) -> None:
        if not os.access(SSHD, os.X_OK):
            raise SshdMissing(f"{SSHD} is missing: apt-get install -y openssh-server")
        self.tmp = Path(tempfile.mkdtemp(prefix="tb-sshd-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.urls: list[str] = []
        try:
            self._keys()
            PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
            for address in addresses:
                self._start(address)
        except BaseException:
            self.close()
            raise

    @property
    def key(self) -> str:
        return str(self.tmp / "client_ed25519")

    def _keys(self) -> None:
        for name in ("host_ed25519", "client_ed25519"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.tmp / name)],
                check=True,
                capture_output=True,
            )
        shutil.copy(self.tmp / "client_ed25519.pub", self.tmp / "authorized_keys")

    def _start(self, address: str) -> None:
        port = free_port(address)
        config = self.tmp / f"sshd-{address}.conf"
        config.write_text(CONFIG.format(address=address, port=port, tmp=self.tmp))
        with (self.tmp / f"sshd-{address}.log").open("wb") as log:  # the child keeps its fd
            proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=log, stdout=log)
        self.procs.append(proc)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                text = (self.tmp / f"sshd-{address}.log").read_text()
                raise RuntimeError(f"sshd on {address}:{port} exited: {text}")
            with socket.socket() as probe:
                probe.settimeout(0.5)
                if probe.connect_ex((address, port)) == 0:
                    self.urls.append(f"ssh://root@{address}:{port}")
                    return
            time.sleep(0.05)
        raise RuntimeError(f"sshd on {address}:{port} did not listen within {START_TIMEOUT} s")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> SshHosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
