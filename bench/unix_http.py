"""HTTP over procrefd's Unix socket with the standard library: the one connection class the
soak, the security test and the dashboard test share."""
import http.client
import json
import socket


class UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTPConnection to the Unix socket at `path` (Host: localhost)."""

    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def unix_json(path, method, request_path, body=None, timeout=30):
    """One JSON request over the Unix socket at `path`: (status, decoded body or {})."""
    conn = UnixHTTPConnection(path, timeout)
    try:
        payload = json.dumps(body) if body is not None else None
        conn.request(method, request_path, body=payload, headers={"Content-Type": "application/json"} if payload else {})
        response = conn.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data else {})
    finally:
        conn.close()
