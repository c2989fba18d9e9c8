"""HTTP over procrefd's Unix socket with the standard library: the one connection class the
soak, the security test and the dashboard test share."""
import http.client
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
