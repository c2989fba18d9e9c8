"""A trivial service for the benchmarks: accepts and closes connections on a Unix socket.
usage: unix_service.py SOCKET_PATH"""
import os, socket, sys

try:
    os.unlink(sys.argv[1])
except FileNotFoundError:
    pass
server = socket.socket(socket.AF_UNIX)
server.bind(sys.argv[1])
server.listen(128)
while True:
    server.accept()[0].close()
