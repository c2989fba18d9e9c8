"""A small service for procrefd's integration tests: listens on a Unix socket and misbehaves
on request.

usage: test_service.py SOCKET [--start-delay S] [--die-after S] [--die-flag FILE]
                              [--close-flag FILE] [--ignore-term] [--term-delay S]
                              [--grandchild MARKER] [--reopen-after S] [--accepts FILE]
"""
import argparse, os, signal, socket, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("socket")
ap.add_argument("--start-delay", type=float, default=0)
ap.add_argument("--die-after", type=float, default=None, help="exit 3 this long after listening")
ap.add_argument("--die-flag", default=None, help="with --die-after: only die while this file exists")
ap.add_argument("--close-flag", default=None, help="when this file appears: stop listening (stay alive), delete it")
ap.add_argument("--reopen-after", type=float, default=None, help="with --close-flag: listen again this long after closing")
ap.add_argument("--accepts", default=None, help="write the number of accepted connections here after each one")
ap.add_argument("--ignore-term", action="store_true")
ap.add_argument("--term-delay", type=float, default=None, help="on SIGTERM, exit after this long")
ap.add_argument("--grandchild", default=None,
                help="start a child ignoring SIGTERM, with MARKER in its argv; it creates MARKER.ready once it ignores it")
args = ap.parse_args()

if args.ignore_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
elif args.term_delay is not None:
    def slow_exit(*_):
        time.sleep(args.term_delay)
        sys.exit(0)
    signal.signal(signal.SIGTERM, slow_exit)

if args.grandchild:
    subprocess.Popen([sys.executable, "-c",
                      "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                      "open(sys.argv[1] + '.ready', 'w').close(); time.sleep(1000)",
                      args.grandchild])

time.sleep(args.start_delay)
try:
    os.unlink(args.socket)
except FileNotFoundError:
    pass
def listen():
    s = socket.socket(socket.AF_UNIX)
    s.bind(args.socket)
    s.listen(64)
    s.settimeout(0.02)
    return s


server = listen()
began = time.monotonic()
closed_at = None
accepted = 0
while True:
    if args.die_after is not None and time.monotonic() - began > args.die_after:
        if args.die_flag is None or os.path.exists(args.die_flag):
            sys.exit(3)
    if server is not None and args.close_flag and os.path.exists(args.close_flag):
        server.close()
        os.unlink(args.socket)
        os.unlink(args.close_flag)
        server = None
        closed_at = time.monotonic()
    if server is None:
        if args.reopen_after is not None and time.monotonic() - closed_at >= args.reopen_after:
            server = listen()
            continue
        time.sleep(0.02)
        continue
    try:
        conn, _ = server.accept()
        conn.close()
        accepted += 1
        if args.accepts:
            with open(args.accepts + ".tmp", "w") as f:
                f.write(str(accepted))
            os.rename(args.accepts + ".tmp", args.accepts)
    except socket.timeout:
        pass
