"""SSH transport on paramiko: one lazily opened, reused, host-key-verified connection per node.

Owns: connecting (strict or accept-new host key checking against a known_hosts file read by
:mod:`.known_hosts`: a key on an ``@revoked`` line is refused before authentication under
every policy, a host known only through ``@cert-authority`` is asked for its host
certificate, which is checked against the CA; key or agent authentication only, ProxyJump
through a ``direct-tcpip`` channel, keepalive, connect timeout, retries with exponential
backoff and jitter on connection errors only), running one command per session channel with
a deadline and without deadlocking on large outputs, keeping at most a cap of each
(:mod:`upgrader.transport.bounded`; or streaming its stdout into a local 0600 file:
:meth:`SSHTransport.stream_to`), sudo wrapping (the sudo password comes from an
environment variable and is only ever written to the channel's stdin; so are the values of the
inventory's ``node_env``, exported inside the root shell: :mod:`upgrader.core.nodeenv`), SFTP
download, and
:class:`SSHPool`, the thread-safe set of per-node transports the gatherer and executor
share.

Must not: print, log secrets, retry a command that reached the node, accept an unknown or
changed host key under the strict policy, accept a revoked key or an unverified certificate,
or know about Kubernetes, plans or steps.
"""

from __future__ import annotations

import logging
import os
import secrets
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self

import paramiko
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from upgrader.core import nodeenv
from upgrader.core.settings import SettingHints
from upgrader.errors import ConfigError, HostKeyError, TransportError
from upgrader.transport.base import Result, SSHTarget, brief, captured
from upgrader.transport.bounded import DEFAULT_OUTPUT_CAP, OutputBuffer
from upgrader.transport.known_hosts import (
    CERT_SUFFIX,
    CertificateRejected,
    Entry,
    KnownHosts,
    certificate_blob,
    check_host_certificate,
    fingerprint,
)

log = logging.getLogger("upgrader.transport")

HOST_KEY_POLICIES = ("strict", "accept-new")
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
# OpenSSH's sshd allows 10 sessions per connection by default (MaxSessions).
DEFAULT_MAX_SESSIONS = 8
CLOSE_WAIT = 2.0  # seconds close() waits for a connect in progress on another thread

_READ_CHUNK = 65536
_known_hosts_lock = threading.Lock()


def host_key_name(host: str, port: int) -> str:
    """The known_hosts name of ``host:port``: ``host`` for port 22, else ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


def sudo_wrap(command: str, *, with_password: bool, prelude: str = "") -> str:
    """``command`` run as root through sudo. Without a password sudo must not prompt
    (``-n``); with one, sudo reads it from stdin (``-S``) with an empty prompt, and the
    command's own stdin is /dev/null so a password sudo did not need is never read by it.
    ``prelude`` (:func:`upgrader.core.nodeenv.prologue`) runs first inside the root shell:
    it reads the node environment from stdin, skipping such a password, then closes stdin."""
    if with_password:
        head = prelude or "exec </dev/null; "
        return f"sudo -S -p '' -- sh -c {shlex.quote(head + command)}"
    return f"sudo -n -- sh -c {shlex.quote(prelude + command)}"


def _one_line(text: object) -> str:
    return " ".join(str(text).split()) or type(text).__name__


def _reason(exc: BaseException | None) -> str:
    """Why a connection failed, in words: paramiko's ``NoValidConnectionsError`` reads
    "[Errno None] Unable to connect to port 22 on 10.0.0.5"; its per-address errors say
    what happened ("Connection refused")."""
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        why = sorted(
            {(getattr(e, "strerror", None) or _one_line(e)).lower() for e in exc.errors.values()}
        )
        return ", ".join(why) or "cannot connect"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return _one_line(exc)


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Called by paramiko when known_hosts has no usable plain key for the host: accepts a
    certificate a trusted ``@cert-authority`` vouches for, records a new key under
    ``accept-new``, refuses everything else (and a revoked key always)."""

    def __init__(self, target: SSHTarget, path: Path, known: KnownHosts | None) -> None:
        self._target = target
        self._path = path
        self._known = known

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        t = self._target
        known = self._known
        if known is not None:
            _refuse_revoked(t, self._path, known, key)
            cas = known.authorities(hostname)
            cert = certificate_blob(key)
            if cert is not None and cas:
                try:
                    ca = check_host_certificate(cert, t.host, cas, known)
                except CertificateRejected as e:
                    raise HostKeyError(
                        f"node {t.node}: host certificate of {t.host}:{t.port} REJECTED: "
                        f"{e} ({self._path} line {_ca_lines(cas)} trusts its CA); "
                        "refusing to connect",
                        node=t.node,
                    ) from None
                if ca is not None:
                    log.info(
                        "node %s: host certificate of %s:%d (%s %s) signed by the CA on "
                        "line %d of %s",
                        t.node, t.host, t.port, key.get_name(), fingerprint(key),
                        ca.lineno, self._path,
                    )  # fmt: skip
                    return
            if cas and t.host_key_policy != "accept-new":
                offered = "a certificate of another CA" if cert is not None else "a plain key"
                raise HostKeyError(
                    f"node {t.node}: host key of {t.host}:{t.port} ({key.get_name()} "
                    f"{fingerprint(key)}) is {offered}, and {self._path} trusts only the "
                    f"certificate authority on line {_ca_lines(cas)} for this host "
                    "(host_key_policy strict); give the node a host certificate signed by "
                    "that CA (sshd HostCertificate), or add its host key to known_hosts",
                    node=t.node,
                )
            if not cas and known.revoked_authority(hostname) and cert is not None:
                raise HostKeyError(
                    f"node {t.node}: the certificate authority {self._path} names for "
                    f"{t.host}:{t.port} is marked @revoked; refusing to connect",
                    node=t.node,
                )
        if t.host_key_policy == "accept-new":
            _append_known_host(self._path, hostname, key)
            log.info(
                "node %s: recorded new host key %s %s for %s:%d in %s",
                t.node,
                key.get_name(),
                key.fingerprint,
                t.host,
                t.port,
                self._path,
            )
            return
        raise HostKeyError(
            f"node {t.node}: host key of {t.host}:{t.port} ({key.get_name()} "
            f"{key.fingerprint}) is not in {self._path} (host_key_policy strict); "
            "verify the fingerprint out of band and add it to known_hosts, or set "
            f"{_where(t, 'ssh.host_key_policy')} to accept-new",
            node=t.node,
        )


def _where(target: SSHTarget, key: str) -> str:
    """Where the user sets ``key`` in the inventory the target came from."""
    return SettingHints(target.settings_form).where(key)


def _ca_lines(cas: list[Entry]) -> str:
    return ", ".join(str(c.lineno) for c in cas)


def _refuse_revoked(target: SSHTarget, path: Path, known: KnownHosts, key: paramiko.PKey) -> None:
    """Raise HostKeyError when the server's key is on an ``@revoked`` line."""
    line = known.revoked_line(key)
    if line is None:
        return
    t = target
    raise HostKeyError(
        f"node {t.node}: host key of {t.host}:{t.port} ({key.get_name()} {fingerprint(key)}) "
        f"is REVOKED ({path} line {line}: @revoked); refusing to connect (give the node a "
        "new host key and add that to known_hosts)",
        node=t.node,
    )


def _prefer_certificates(sock: Any, /, **kwargs: Any) -> paramiko.Transport:
    """A Transport asking for certificate host keys first (the host is known only through
    a ``@cert-authority`` line); plain keys stay as the fallback, as in ``ssh``."""
    transport = paramiko.Transport(sock, **kwargs)
    opts = transport.get_security_options()
    plain = [k for k in opts.key_types if not k.endswith(CERT_SUFFIX)]
    certs = [k for k in transport.preferred_keys if k.endswith(CERT_SUFFIX)]
    opts.key_types = [*dict.fromkeys(certs), *plain]
    return transport


def _append_known_host(path: Path, hostname: str, key: paramiko.PKey) -> None:
    line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
    with _known_hosts_lock:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "r+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    line = "\n" + line
            fh.write(line.encode())
            fh.flush()
            os.fsync(fh.fileno())


_known_hosts_cache: dict[str, tuple[tuple[int, int, int], KnownHosts]] = {}


def _known_host_keys(path: Path) -> KnownHosts:
    """``path`` parsed once per version of the file (inode, size, mtime): a known_hosts
    line takes about 0.15 ms to parse, and a fan-out to N nodes whose known_hosts holds
    N lines would otherwise parse N*N lines (6 s of CPU at 200 nodes); the warnings about
    lines that are skipped come once per version too. Treat the result as read-only; a
    key appended under accept-new changes the file and so the version."""
    st = path.stat()
    version = (st.st_ino, st.st_size, st.st_mtime_ns)
    key = str(path)
    with _known_hosts_lock:
        hit = _known_hosts_cache.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        keys = KnownHosts.load(path)
        _known_hosts_cache[key] = (version, keys)
        return keys


def _retryable(exc: BaseException) -> bool:
    """Connection errors are retried; refusals (host key, authentication) and our own
    errors (already final) are not."""
    if isinstance(exc, TransportError | ConfigError | paramiko.AuthenticationException):
        return False
    if isinstance(exc, paramiko.BadHostKeyException):
        return False
    return isinstance(exc, OSError | EOFError | paramiko.SSHException)


class _Closing:
    """``with`` closes it."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SSHTransport(_Closing):
    """Runs commands on one node over one reused SSH connection (see module docstring).

    ``jump`` is the transport of the ProxyJump host (shared through :class:`SSHPool`);
    when ``target.jump`` is set and none is given, this transport opens and owns one.
    """

    def __init__(
        self,
        target: SSHTarget,
        *,
        jump: SSHTransport | None = None,
        connect_attempts: int = 3,
        retry_wait: float = 0.5,
        retry_max_wait: float = 8.0,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
    ) -> None:
        if target.host_key_policy not in HOST_KEY_POLICIES:
            raise ConfigError(
                f"node {target.node}: host_key_policy {target.host_key_policy!r} is not one "
                f"of {', '.join(HOST_KEY_POLICIES)}"
            )
        self.node = target.node
        self.target = target
        self._connect_attempts = max(1, connect_attempts)
        self._retry_wait = retry_wait
        self._retry_max_wait = retry_max_wait
        self._owns_jump = False
        if jump is None and target.jump is not None:
            jump = SSHTransport(
                target.jump,
                connect_attempts=connect_attempts,
                retry_wait=retry_wait,
                retry_max_wait=retry_max_wait,
            )
            self._owns_jump = True
        self._jump = jump
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.RLock()
        self._sessions = threading.BoundedSemaphore(max(1, max_sessions))
        self._root_lock = threading.Lock()
        self._remote_root: bool | None = None
        self._sudo_ok = False

    # ------------------------------------------------------------------ connection
    @property
    def _endpoint(self) -> str:
        return f"{self.target.host}:{self.target.port}"

    def _known_hosts_path(self) -> Path:
        return Path(self.target.known_hosts or DEFAULT_KNOWN_HOSTS).expanduser()

    def connect(self) -> None:
        """Open the connection now (otherwise the first command does)."""
        self._ensure_transport()

    def _ensure_transport(self) -> paramiko.Transport:
        with self._lock:
            client = self._client
            if client is not None:
                t = client.get_transport()
                if t is not None and t.is_active():
                    return t
                client.close()
                self._client = None
                log.debug("node %s: connection lost; reconnecting", self.node)
            self._client = self._connect_with_retries()
            t = self._client.get_transport()
            assert t is not None
            return t

    def _connect_with_retries(self) -> paramiko.SSHClient:
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.info(  # the final failure is the node's finding; retries show with -v
                "node %s: connect to %s failed (attempt %d/%d: %s); retrying in %.1fs",
                self.node,
                self._endpoint,
                state.attempt_number,
                self._connect_attempts,
                _reason(exc),
                wait,
            )

        retrying = Retrying(
            stop=stop_after_attempt(self._connect_attempts),
            wait=wait_exponential(multiplier=self._retry_wait, max=self._retry_max_wait)
            + wait_random(0, self._retry_wait),
            retry=retry_if_exception(_retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        user = self.target.user or "(local user)"
        try:
            client: paramiko.SSHClient = retrying(self._connect_once)
        except TransportError:
            raise
        except paramiko.AuthenticationException as e:
            keys = (
                f"the key {Path(self.target.identity_file).expanduser()}"
                if self.target.identity_file
                else "the SSH agent's and ~/.ssh's default keys"
            )
            raise TransportError(
                f"node {self.node}: authentication as {user} to {self._endpoint} failed with "
                f"{keys}: {_one_line(e)} (key and agent authentication only)",
                node=self.node,
            ) from None
        except (OSError, EOFError, paramiko.SSHException) as e:
            raise TransportError(
                f"node {self.node}: cannot connect to {self._endpoint} "
                f"after {self._connect_attempts} attempt(s): {_reason(e)}",
                node=self.node,
            ) from None
        log.debug("node %s: connected to %s as %s", self.node, self._endpoint, user)
        return client

    def _connect_once(self) -> paramiko.SSHClient:
        t = self.target
        identity = str(Path(t.identity_file).expanduser()) if t.identity_file else None
        if identity is not None and not os.path.exists(identity):
            raise ConfigError(f"node {t.node}: identity_file {identity} does not exist")
        known_hosts = self._known_hosts_path()
        client = paramiko.SSHClient()
        try:
            known: KnownHosts | None = None
            factory = None
            if known_hosts.exists():
                try:
                    known = _known_host_keys(known_hosts)
                except (OSError, ValueError) as e:
                    raise ConfigError(
                        f"node {t.node}: cannot read known_hosts {known_hosts}: {_one_line(e)}"
                    ) from None
                name = host_key_name(t.host, t.port)
                plain = known.host_keys(name)
                for entry in plain:
                    client.get_host_keys().add(name, entry.keytype, entry.key)
                if not plain and known.authorities(name):
                    factory = _prefer_certificates
            client.set_missing_host_key_policy(_HostKeyPolicy(t, known_hosts, known))
            sock: paramiko.Channel | None = None
            if self._jump is not None:
                try:
                    sock = self._jump.open_tunnel(t.host, t.port, t.connect_timeout)
                except TransportError as e:
                    raise TransportError(
                        f"node {t.node}: via jump host {self._jump.node}: {e}", node=t.node
                    ) from None
            try:
                client.connect(
                    hostname=t.host,
                    port=t.port,
                    username=t.user,
                    password=None,
                    key_filename=identity,
                    allow_agent=True,
                    look_for_keys=identity is None,
                    timeout=t.connect_timeout,
                    banner_timeout=t.connect_timeout,
                    auth_timeout=t.connect_timeout,
                    channel_timeout=t.connect_timeout,
                    sock=sock,
                    transport_factory=factory,
                )
            except paramiko.BadHostKeyException as e:
                if known is not None:
                    _refuse_revoked(t, known_hosts, known, e.key)
                raise HostKeyError(
                    f"node {t.node}: host key of {self._endpoint} CHANGED: {known_hosts} has "
                    f"{e.expected_key.get_name()} {e.expected_key.fingerprint}, the server "
                    f"offered {e.key.get_name()} {e.key.fingerprint}; refusing to connect "
                    "(if the node was reinstalled, remove the old key with "
                    f"ssh-keygen -R {shlex.quote(host_key_name(t.host, t.port))} "
                    f"-f {shlex.quote(str(known_hosts))})",
                    node=t.node,
                ) from None
            transport = client.get_transport()
            if transport is None:  # pragma: no cover - paramiko always sets it
                raise paramiko.SSHException("no transport after connect")
            if t.keepalive > 0:
                transport.set_keepalive(t.keepalive)
            return client
        except BaseException:
            client.close()
            raise

    def open_tunnel(self, host: str, port: int, timeout: float) -> paramiko.Channel:
        """A ``direct-tcpip`` channel from this host to ``host:port`` (ProxyJump)."""
        t = self._ensure_transport()
        try:
            return t.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)
        except (OSError, EOFError, paramiko.SSHException) as e:
            raise TransportError(
                f"node {self.node}: cannot open a tunnel to {host}:{port}: {_one_line(e)}",
                node=self.node,
            ) from None

    def _drop(self, client: paramiko.SSHClient | None) -> None:
        with self._lock:
            if client is not None and self._client is client:
                client.close()
                self._client = None

    def _open_session(self) -> tuple[paramiko.SSHClient | None, paramiko.Channel]:
        """A new session channel; reconnects once when the connection turns out dead
        (no command has been sent yet, so this is a connection retry)."""
        last: BaseException | None = None
        for _ in range(2):
            t = self._ensure_transport()
            client = self._client
            try:
                return client, t.open_session(timeout=self.target.connect_timeout)
            except (OSError, EOFError, paramiko.SSHException) as e:
                last = e
                if t.is_active():
                    break
                self._drop(client)
        raise TransportError(
            f"node {self.node}: cannot open an SSH session on {self._endpoint}: {_one_line(last)}",
            node=self.node,
        )

    # ------------------------------------------------------------------ commands
    def _is_remote_root(self) -> bool:
        with self._root_lock:
            if self._remote_root is None:
                probe = self._execute("id -u", None, timeout=self.target.connect_timeout + 30)
                self._remote_root = probe.ok and probe.stdout.strip() == "0"
                log.debug("node %s: remote user is root: %s", self.node, self._remote_root)
            return self._remote_root

    def _prepare(self, command: str, sudo: bool) -> tuple[str, bytes | None]:
        """The command line to send and the stdin to write: the sudo password line (when
        configured), then the node environment (``target.env``: values on stdin only)."""
        marker = f"upgrader-env-{secrets.token_hex(8)}" if self.target.env else ""
        prelude = nodeenv.prologue(marker) if marker else ""
        env_in = nodeenv.payload(self.target.env, marker) if marker else b""
        if not (sudo and self.target.sudo) or self._is_remote_root():
            return prelude + command, env_in or None
        env = self.target.sudo_password_env
        if env is None:
            self._check_sudo(None)
            return sudo_wrap(command, with_password=False, prelude=prelude), env_in or None
        password = os.environ.get(env)
        if password is None:
            raise ConfigError(f"node {self.node}: sudo_password_env names {env}, which is not set")
        stdin = (password + "\n").encode()
        self._check_sudo(stdin)
        return sudo_wrap(command, with_password=True, prelude=prelude), stdin + env_in

    def _check_sudo(self, stdin: bytes | None) -> None:
        """Once per transport, before the first command that needs root: sudo lets the SSH
        user run a command (``true``) with the configured password, or without one. A
        refusal (wrong or missing password, no sudo rights) is bad input that no step
        should be blamed for: :class:`ConfigError` naming the node and sudo's own words."""
        with self._root_lock:
            if self._sudo_ok:
                return
            probe = self._execute(
                sudo_wrap("true", with_password=stdin is not None),
                stdin,
                timeout=self.target.connect_timeout + 30,
            )
            if probe.ok:
                self._sudo_ok = True
                return
        said = _one_line(probe.stderr.strip() or probe.stdout.strip() or "no output")
        env = self.target.sudo_password_env
        how = f"with the password from ${env}" if env else "without a password (sudo -n)"
        raise ConfigError(
            f"node {self.node}: sudo as {self.target.user or '(local user)'} failed {how} "
            f"(exit {'timeout' if probe.timed_out else probe.exit_code}): {said}"
            + (
                ""
                if env
                else f"; set {_where(self.target, 'ssh.sudo_password_env')} if sudo asks "
                "for a password"
            )
        )

    def run(
        self,
        command: str,
        timeout: float = 60.0,
        sudo: bool = True,
        max_output: int = DEFAULT_OUTPUT_CAP,
        on_stderr: Callable[[bytes], None] | None = None,
    ) -> Result:
        wrapped, stdin = self._prepare(command, sudo)
        log.debug(
            "node %s: start%s (timeout %.0fs): %s",
            self.node,
            " [sudo]" if wrapped.startswith("sudo ") else "",
            timeout,
            brief(command),
        )
        result = self._execute(
            wrapped, stdin, timeout, shown=command, max_output=max_output, on_stderr=on_stderr
        )
        log.debug(
            "node %s: end: %s in %.2fs",
            self.node,
            "timed out" if result.timed_out else f"exit {result.exit_code}",
            result.duration,
        )
        return result

    def _start(
        self,
        client: paramiko.SSHClient | None,
        chan: paramiko.Channel,
        command: str,
        stdin: bytes | None,
    ) -> None:
        """Send ``command`` on the new session ``chan``, then ``stdin`` and EOF."""
        try:
            chan.exec_command(command)
        except (OSError, EOFError, paramiko.SSHException) as e:
            self._drop(client)
            raise TransportError(
                f"node {self.node}: SSH session failed while starting a command: {_one_line(e)}",
                node=self.node,
            ) from None
        try:
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            pass  # the command may already have finished and closed the channel

    def _execute(
        self,
        command: str,
        stdin: bytes | None,
        timeout: float,
        shown: str | None = None,
        max_output: int = DEFAULT_OUTPUT_CAP,
        on_stderr: Callable[[bytes], None] | None = None,
    ) -> Result:
        shown = command if shown is None else shown
        start = time.monotonic()
        with self._sessions:
            client, chan = self._open_session()
            try:
                self._start(client, chan, command, stdin)
                out = OutputBuffer(max_output)
                err = OutputBuffer(max_output, on_stderr)
                timed_out = _collect(chan, timeout, out, err)
                duration = time.monotonic() - start
                if out.dropped or err.dropped:
                    log.warning(
                        "node %s: output over the %d-byte cap: %d stdout and %d stderr "
                        "bytes dropped: %s",
                        self.node,
                        max_output,
                        out.dropped,
                        err.dropped,
                        brief(shown),
                    )
                if timed_out:
                    log.warning(
                        "node %s: command timed out after %.0fs; channel closed: %s",
                        self.node,
                        timeout,
                        brief(shown),
                    )
                    return captured(shown, None, out, err, duration, timed_out=True)
                status = chan.exit_status
                if status < 0:
                    # The channel closed without an exit status: the connection dropped,
                    # or the command's processes were killed (the server then sends
                    # "exit-signal", which paramiko does not report). Either way nobody
                    # knows whether the command finished its work.
                    transport = chan.get_transport()
                    if transport is not None and transport.is_active():
                        transport.join(0.5)  # a dying connection finishes closing
                    lost = transport is None or not transport.is_active()
                    if lost:
                        self._drop(client)
                    raise TransportError(
                        f"node {self.node}: SSH session to {self._endpoint} dropped while "
                        f"running a command (after {duration:.1f}s, "
                        + ("connection lost" if lost else "no exit status")
                        + "); it may or may not have completed",
                        node=self.node,
                    )
                return captured(shown, status, out, err, duration)
            finally:
                chan.close()

    def stream_to(
        self,
        command: str,
        local: str | os.PathLike[str],
        timeout: float = 600.0,
        sudo: bool = True,
    ) -> Result:
        """:class:`~upgrader.transport.base.FileTransport`: ``command`` (as root through
        sudo when configured), its stdout byte for byte into ``local``."""
        wrapped, stdin = self._prepare(command, sudo)
        dest = Path(local)
        part = dest.with_name(dest.name + ".part")
        start = time.monotonic()
        with self._sessions:
            client, chan = self._open_session()
            try:
                self._start(client, chan, wrapped, stdin)
                fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                err = OutputBuffer()
                with os.fdopen(fd, "wb") as sink:
                    timed_out = _collect(chan, timeout, sink, err)
                duration = time.monotonic() - start
                status = None if timed_out else chan.exit_status
                if status is not None and status < 0:
                    part.unlink(missing_ok=True)
                    raise TransportError(
                        f"node {self.node}: SSH session dropped while streaming {brief(command)}",
                        node=self.node,
                    )
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            finally:
                chan.close()
        if status == 0:
            os.replace(part, dest)
        else:
            part.unlink(missing_ok=True)
        log.debug("node %s: streamed %s to %s: exit %s", self.node, brief(command), dest, status)
        return Result(
            command,
            status,
            "",
            err.text(),
            duration,
            timed_out=timed_out,
            stderr_dropped=err.dropped,
        )

    def sftp_get(self, remote: str, local: str | os.PathLike[str]) -> None:
        """Download ``remote`` to ``local`` (atomically: a ``.part`` file, then rename).
        Runs as the SSH user (no sudo)."""
        dest = Path(local)
        part = dest.with_name(dest.name + ".part")
        with self._sessions:
            t = self._ensure_transport()
            try:
                sftp = paramiko.SFTPClient.from_transport(t)
                if sftp is None:
                    raise paramiko.SSHException("the server refused the sftp subsystem")
                with sftp:
                    sftp.get(remote, str(part))
                os.replace(part, dest)
            except (OSError, EOFError, paramiko.SSHException) as e:
                part.unlink(missing_ok=True)
                raise TransportError(
                    f"node {self.node}: sftp get {remote} failed: {_one_line(e)}",
                    node=self.node,
                ) from None
        log.debug("node %s: fetched %s to %s", self.node, remote, dest)

    def close(self) -> None:
        """Close the connection. Does not wait for a connect in progress on another thread
        (after Ctrl-C, a node that accepted TCP but sends no SSH banner would hold the
        caller up to the banner timeout): that connect is abandoned to its own timeout, and
        the process exit ends it."""
        if not self._lock.acquire(timeout=CLOSE_WAIT):
            log.debug("node %s: closed while a connect was in progress", self.node)
            return
        try:
            if self._client is not None:
                self._client.close()
                self._client = None
        finally:
            self._lock.release()
        if self._owns_jump and self._jump is not None:
            self._jump.close()


class _Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


def _collect(chan: paramiko.Channel, timeout: float, out: _Sink, err: OutputBuffer) -> bool:
    """Read stdout and stderr as they arrive (so the remote never blocks on a full window)
    until the command's exit status and EOF arrived, the channel closed, or ``timeout``
    passed. Returns whether it timed out. ``out`` is an :class:`OutputBuffer` (bounded:
    what is past its cap is read and dropped) or a file stdout is written to."""
    deadline = time.monotonic() + timeout

    def drain() -> None:
        while chan.recv_ready():
            data = chan.recv(_READ_CHUNK)
            if not data:
                break
            out.write(data)
        while chan.recv_stderr_ready():
            data = chan.recv_stderr(_READ_CHUNK)
            if not data:
                break
            err.write(data)

    while True:
        drain()
        finished = chan.closed or (chan.eof_received and chan.exit_status_ready())
        if finished:
            drain()
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True
        if chan.eof_received:
            chan.status_event.wait(min(remaining, 0.2))
        else:
            select.select([chan], [], [], min(remaining, 0.2))


@dataclass(eq=False, kw_only=True)
class SSHPool(_Closing):
    """One :class:`SSHTransport` per node (and one per jump host), created on first use,
    shared by every thread, each with the pool's connect retries and, for a node,
    ``max_sessions``; :meth:`close` closes them all."""

    connect_attempts: int = 3
    retry_wait: float = 0.5
    retry_max_wait: float = 8.0
    max_sessions: int = DEFAULT_MAX_SESSIONS
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _nodes: dict[str, SSHTransport] = field(default_factory=dict, init=False, repr=False)
    _jumps: dict[SSHTarget, SSHTransport] = field(default_factory=dict, init=False, repr=False)

    def get(self, target: SSHTarget) -> SSHTransport:
        """The transport for ``target.node`` (replaced if the node's target changed)."""
        with self._lock:
            current = self._nodes.get(target.node)
            if current is not None and current.target == target:
                return current
            if current is not None:
                current.close()
            transport = self._new(target, self.max_sessions)
            self._nodes[target.node] = transport
            return transport

    def _jump_for(self, target: SSHTarget) -> SSHTransport:
        found = self._jumps.get(target)
        if found is None:
            found = self._new(target)
            self._jumps[target] = found
        return found

    def _new(self, target: SSHTarget, max_sessions: int = DEFAULT_MAX_SESSIONS) -> SSHTransport:
        """A transport to ``target`` with the pool's connect retries, through the pool's
        transport to its jump host when it has one."""
        jump = self._jump_for(target.jump) if target.jump is not None else None
        return SSHTransport(
            target,
            jump=jump,
            connect_attempts=self.connect_attempts,
            retry_wait=self.retry_wait,
            retry_max_wait=self.retry_max_wait,
            max_sessions=max_sessions,
        )

    def close(self) -> None:
        with self._lock:
            nodes, jumps = list(self._nodes.values()), list(self._jumps.values())
            self._nodes.clear()
            self._jumps.clear()
        for t in nodes:
            t.close()
        for t in reversed(jumps):  # innermost hops were created first
            t.close()
