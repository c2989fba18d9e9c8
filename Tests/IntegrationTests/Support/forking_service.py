"""A service that daemonizes, for procrefd's integration tests: forks, calls setsid, forks
again, and the launcher exits 0. The daemon listens on a Unix socket and starts a worker
that leaves its process group. Every pid it makes is appended to PIDS, so a test can check
that none of them is left.

usage: forking_service.py SOCKET PIDS [--pid-file FILE]
"""
import argparse, os, socket, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("socket")
ap.add_argument("pids")
ap.add_argument("--pid-file", default=None)
args = ap.parse_args()


def note(pid):
    with open(args.pids, "a") as f:
        f.write(f"{pid}\n")


if os.fork() > 0:
    os._exit(0)  # the launcher: exits as soon as the first child runs
os.setsid()
if os.fork() > 0:
    os._exit(0)
# The daemon: reparented (to procrefd, a subreaper), in its own session.
note(os.getpid())
worker = os.fork()
if worker == 0:
    os.setpgid(0, 0)  # leaves the daemon's process group as well
    while True:
        time.sleep(1)
note(worker)  # before the pid file: a test that sees the file sees both pids
try:
    os.unlink(args.socket)
except FileNotFoundError:
    pass
server = socket.socket(socket.AF_UNIX)
server.bind(args.socket)
server.listen(16)
if args.pid_file:
    with open(args.pid_file + ".tmp", "w") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(args.pid_file + ".tmp", args.pid_file)
while True:
    conn, _ = server.accept()
    conn.close()
