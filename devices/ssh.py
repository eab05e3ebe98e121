"""The deploy transport (torch-free): the ssh target, its ``ssh``/``rsync`` command lines and failure messages.

:class:`SshTarget` turns a ``USER@HOST`` (or a ``~/.ssh/config`` alias) and its options into
``ssh`` arguments that never prompt (``BatchMode=yes``, ``StrictHostKeyChecking``, a
``ConnectTimeout``) and the ``rsync -e`` shell that reuses them. :func:`_q` quotes for the remote
POSIX shell, :func:`check_remote_name` refuses folder names that are not one plain component, and
``_SSH_FAILURES`` maps ssh's messages to one actionable line. The steps that use them are
:mod:`mind_edge.devices.deploy`.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mind_edge.devices.errors import DeviceError
from mind_edge.textsafe import clean

DEFAULT_CONNECT_TIMEOUT = 10
HOST_KEY_POLICIES = ("accept-new", "yes", "no")

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class DeployError(DeviceError):
    """A deploy step failed; the message says which, why, and what to do."""


class DiskFullError(DeployError):
    """The device has no room for the bundle."""


# ----------------------------------------------------------------------------- target


@dataclass(frozen=True)
class SshTarget:
    """Where to deploy: ``host`` is ``USER@HOST``, ``HOST`` or an alias of ``~/.ssh/config``."""

    host: str
    port: int | None = None
    identity: Path | None = None
    strict_host_key_checking: str = "accept-new"
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT
    options: tuple[str, ...] = ()  # extra ``-o KEY=VALUE`` (e.g. UserKnownHostsFile=...)
    config_file: Path | None = None  # ``ssh -F``; None: the user's ~/.ssh/config applies
    ssh: str = "ssh"
    rsync: str = "rsync"

    def __post_init__(self) -> None:
        if not self.host or self.host.startswith("-") or any(c.isspace() for c in self.host):
            raise DeployError(f"--host must look like USER@HOST or a Host alias of ~/.ssh/config, got {self.host!r}")
        if self.port is not None and not (isinstance(self.port, int) and 0 < self.port < 65536):
            raise DeployError(f"--port must be a TCP port (1..65535), got {self.port!r}")
        if self.strict_host_key_checking not in HOST_KEY_POLICIES:
            raise DeployError(
                f"StrictHostKeyChecking must be one of {', '.join(HOST_KEY_POLICIES)}, got "
                f"{self.strict_host_key_checking!r}"
            )
        if not (isinstance(self.connect_timeout, int) and self.connect_timeout > 0):
            raise DeployError(f"the connect timeout must be a positive number of seconds, got {self.connect_timeout!r}")
        for opt in self.options:
            if "=" not in opt or opt.startswith("-"):
                raise DeployError(f"ssh options are given as KEY=VALUE (as ssh -o takes them), got {opt!r}")

    @property
    def user(self) -> str | None:
        return self.host.split("@", 1)[0] if "@" in self.host else None

    @property
    def hostname(self) -> str:
        return self.host.split("@", 1)[-1]

    def describe(self) -> str:
        return self.host + (f" port {self.port}" if self.port else "")

    def ssh_args(self) -> list[str]:
        """``ssh`` and its options, without the destination."""
        args = [self.ssh]
        if self.config_file is not None:
            args += ["-F", str(self.config_file)]
        args += [
            "-o",
            "BatchMode=yes",
            "-o",
            f"StrictHostKeyChecking={self.strict_host_key_checking}",
            "-o",
            f"ConnectTimeout={self.connect_timeout}",
        ]
        if self.port is not None:
            args += ["-p", str(self.port)]
        if self.identity is not None:
            args += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        for opt in self.options:
            args += ["-o", opt]
        return args

    def ssh_command(self, remote_command: str) -> list[str]:
        return self.ssh_args() + ["--", self.host, remote_command]  # '--': the host is never an option

    def rsync_shell(self) -> str:
        """The ``rsync -e`` value: the same ssh with the same options (quoted for rsync's own splitting)."""
        return " ".join(shlex.quote(a) for a in self.ssh_args())


# ----------------------------------------------------------------------------- helpers


def _q(s: str) -> str:
    """Quote for the remote POSIX shell; a leading ``~/`` stays expandable."""
    if s == "~":
        return '"$HOME"'
    if s.startswith("~/"):
        return '"$HOME"/' + shlex.quote(s[2:])
    return shlex.quote(s)


def check_remote_name(name: str, what: str) -> str:
    """A bundle folder name for the device: one plain component, not starting with '.' or '-'."""
    if not name or "/" in name or name.startswith((".", "-")) or not name.isprintable() or name in ("..",):
        raise DeployError(
            f"{what} must be a plain folder name (no '/', not starting with '.' or '-', no control "
            f"characters), got {clean(name, limit=60)!r}"
        )
    return name


def _rsync_path(s: str) -> str:
    """A remote path for rsync (its remote side does the ``~`` expansion; relative = home)."""
    return s[2:] if s.startswith("~/") else s


def _tail(text: str, n: int = 3) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:])


def _default_runner(args: Sequence[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}  # English messages to recognise errors (ssh passes LC_* on)
    return subprocess.run(list(args), capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, **kw)


_SSH_FAILURES = (
    (
        "Connection refused",
        "connection refused — is sshd running on the device and listening on {port}? "
        "(check the address, --port, and 'sudo systemctl status ssh' on the device)",
    ),
    (
        "Permission denied",
        "the device refused our key (Permission denied) — deploy logs in with a key, never a "
        "password (BatchMode): pass the right --identity FILE{identity} and make sure its .pub is in "
        "~/.ssh/authorized_keys of {user} on the device (ssh-copy-id does that)",
    ),
    (
        "Host key verification failed",
        "the device's host key is unknown or has CHANGED (Host key verification failed) "
        "— if the device was re-flashed, remove the old key with: ssh-keygen -R {hostname}",
    ),
    (
        "REMOTE HOST IDENTIFICATION HAS CHANGED",
        "the device's host key has CHANGED — if it was re-flashed, remove the old key with: ssh-keygen -R {hostname}",
    ),
    (
        "Could not resolve hostname",
        "the host name {hostname} does not resolve — check the spelling, your DNS/mDNS, or "
        "add a Host entry to ~/.ssh/config",
    ),
    ("Name or service not known", "the host name {hostname} does not resolve — check the spelling or ~/.ssh/config"),
    (
        "timed out",
        "no answer within {timeout} s (Connection timed out) — is the device on and reachable (same network, "
        "VPN)? Raise --connect-timeout for slow links",
    ),
    ("No route to host", "no route to host — the device is not reachable from this network"),
    ("Network is unreachable", "the network is unreachable from this machine"),
)
