"""A client for procrefd, the host's lease daemon, with the standard library only.

    from procrefd_client import Procrefd
    pd = Procrefd()                          # the default state dir's socket
    with pd.lease("llm", wait=30):           # held by this process; released on exit
        ...
    lease = pd.acquire("db", ttl=30); lease.keepalive(); lease.release()
    pd.services(); pd.service("db")["count"]
    for event in pd.events(service="db", follow=True): ...

Over the Unix socket procrefd knows the caller from the kernel; over TCP (`url=`) it needs a
token. Every refusal raises `ProcrefdError`, carrying the problem+json fields.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse
from typing import Any, Dict, Iterator, List, Optional

__all__ = ["Procrefd", "Lease", "ProcrefdError", "default_socket"]
__version__ = "0.1.0"


class ProcrefdError(Exception):
    """A refusal (RFC 9457 problem details), or procrefd out of reach (status 0)."""

    def __init__(self, status: int, type: str, title: str, detail: str, body: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.body = body or {}


def default_socket(environ: Optional[Dict[str, str]] = None) -> str:
    """The socket of the default state dir: $XDG_STATE_HOME/procrefd, else ~/.local/state/procrefd."""
    env = os.environ if environ is None else environ
    state = env.get("XDG_STATE_HOME", "")
    base = os.path.join(state, "procrefd") if state.startswith("/") else os.path.join(env.get("HOME", "/tmp"), ".local/state/procrefd")
    return os.path.join(base, "procrefd.sock")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class Lease:
    """A granted lease. As a context manager it is released on exit."""

    def __init__(self, client: "Procrefd", document: Dict[str, Any]) -> None:
        self._client = client
        self.document = document
        self.id: str = document["id"]
        self.service: str = document["service"]
        self.released = False

    @property
    def count(self) -> Optional[int]:
        """The kernel count right after the acquire."""
        return self.document.get("count")

    def keepalive(self) -> Dict[str, Any]:
        """Renews a TTL lease; returns the lease as procrefd shows it."""
        return self._client._call("POST", f"/v1/leases/{_quote(self.id)}/keepalive")

    def release(self) -> Dict[str, Any]:
        """Ends the lease (once: a second call does nothing)."""
        if self.released:
            return {}
        answer = self._client._call("DELETE", f"/v1/leases/{_quote(self.id)}")
        self.released = True
        return answer

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Lease(id={self.id!r}, service={self.service!r})"


class Procrefd:
    """procrefd at a Unix socket (the default), or at a TCP `url` with a `token`."""

    def __init__(self, state_dir: Optional[str] = None, socket: Optional[str] = None, url: Optional[str] = None,
                 token: Optional[str] = None, timeout: float = 120.0) -> None:
        self.timeout = timeout
        self.token = token
        self._url: Optional[urllib.parse.SplitResult] = None
        self.socket: Optional[str] = None
        if url is not None:
            self._url = urllib.parse.urlsplit(url)
            if self._url.scheme != "http" or not self._url.hostname:
                raise ValueError("url: http://HOST:PORT (procrefd serves plain HTTP on loopback)")
        else:
            self.socket = socket or (os.path.join(state_dir, "procrefd.sock") if state_dir else default_socket())

    # --- leases -----------------------------------------------------------------------
    def acquire(self, service: str, ttl: Optional[float] = None, wait: float = 0, holder: str = "",
                client_pid: Optional[int] = None) -> Lease:
        """A lease on `service`: with `ttl` (seconds) it expires unless kept alive; with
        `client_pid` it ends when that process does. `wait` (seconds) queues for a slot."""
        body: Dict[str, Any] = {"wait_ms": int(wait * 1000)}
        if ttl is not None:
            body["ttl_ms"] = int(ttl * 1000)
        if client_pid is not None:
            body["client_pid"] = client_pid
        if holder:
            body["holder"] = holder
        return Lease(self, self._call("POST", f"/v1/services/{_quote(service)}/leases", body))

    def lease(self, service: str, wait: float = 0, holder: str = "", ttl: Optional[float] = None) -> Lease:
        """A lease held by this process (`client_pid`): released on leaving `with`, and by
        the kernel if the process dies first."""
        return self.acquire(service, ttl=ttl, wait=wait, holder=holder, client_pid=os.getpid())

    def leases(self, service: Optional[str] = None) -> List[Dict[str, Any]]:
        query = f"?service={_quote(service)}" if service else ""
        return self._call("GET", f"/v1/leases{query}")["leases"]

    # --- services ---------------------------------------------------------------------
    def services(self) -> List[Dict[str, Any]]:
        return self._call("GET", "/v1/services")["services"]

    def service(self, name: str) -> Dict[str, Any]:
        return self._call("GET", f"/v1/services/{_quote(name)}")

    def define(self, name: str, definition: Dict[str, Any]) -> Dict[str, Any]:
        """Defines (or, while stopped, replaces) a service: the body of PUT /v1/services/NAME."""
        return self._call("PUT", f"/v1/services/{_quote(name)}", definition)

    def remove(self, name: str) -> Dict[str, Any]:
        return self._call("DELETE", f"/v1/services/{_quote(name)}")

    # --- events -----------------------------------------------------------------------
    def events(self, service: Optional[str] = None, kind: Optional[str] = None, after: Optional[int] = None,
               follow: bool = False, limit: int = 1000) -> Iterator[Dict[str, Any]]:
        """The audit log's events, oldest first; with `follow`, then each new one as it is
        recorded (the NDJSON stream), until the caller stops iterating."""
        query: Dict[str, Any] = {"order": "asc", "limit": limit}
        if service:
            query["service"] = service
        if kind:
            query["kind"] = kind
        if after is not None:
            query["after"] = after
        path = "/v1/events?" + urllib.parse.urlencode(query)
        if not follow:
            yield from self._call("GET", path)["events"]
            return
        connection = self._connection(timeout=None)
        try:
            connection.request("GET", path, headers=self._headers({"Accept": "application/x-ndjson"}))
            response = connection.getresponse()
            if response.status != 200:
                raise _error(response.status, response.read())
            for line in response:
                line = line.strip()
                if line:
                    yield json.loads(line)
        finally:
            connection.close()

    # --- plumbing ---------------------------------------------------------------------
    def _connection(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        if self._url is not None:
            return http.client.HTTPConnection(self._url.hostname, self._url.port or 80, timeout=timeout)
        assert self.socket is not None
        return _UnixConnection(self.socket, timeout)  # type: ignore[arg-type]

    def _headers(self, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        headers = dict(extra or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _call(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        payload = json.dumps(body).encode() if body is not None else None
        headers = self._headers({"Content-Type": "application/json"} if payload is not None else {})
        connection = self._connection(self.timeout)
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except OSError as error:
            where = self.socket or (self._url.geturl() if self._url else "")
            raise ProcrefdError(0, "urn:procrefd:problem:unreachable", "Unreachable", f"procrefd at {where}: {error}") from error
        finally:
            connection.close()
        if response.status >= 400:
            raise _error(response.status, data)
        return json.loads(data) if data else {}


def _error(status: int, data: bytes) -> ProcrefdError:
    try:
        body = json.loads(data)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return ProcrefdError(status, body.get("type", "about:blank"), body.get("title", "Error"), body.get("detail", data.decode(errors="replace")), body)


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")
