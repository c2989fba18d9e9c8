"""A socket-activated test service, run as systemd would run one.

It checks that the sockets are meant for it (LISTEN_PID is its own pid), then accepts on
descriptors 3 .. 3+LISTEN_FDS-1 and answers each connection with one line,
"activated NAMES COUNT", before closing it.
"""
import os
import selectors
import socket
import sys


def main() -> None:
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        print(f"LISTEN_PID {os.environ.get('LISTEN_PID')!r} is not {os.getpid()}", file=sys.stderr)
        sys.exit(3)
    count = int(os.environ["LISTEN_FDS"])
    names = os.environ.get("LISTEN_FDNAMES", "")
    selector = selectors.DefaultSelector()
    for fd in range(3, 3 + count):
        selector.register(socket.socket(fileno=fd), selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            connection, _ = key.fileobj.accept()
            connection.sendall(f"activated {names} {count}\r\n".encode())
            connection.close()


if __name__ == "__main__":
    main()
