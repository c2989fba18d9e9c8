#!/usr/bin/env python3
"""Warm idle benchmark: the acquire that thaws a frozen service (idle = "freeze") against the
acquire that cold-starts the same real service (idle = "stop"), redis-server here.

Each round releases the lease, waits until the service is frozen (or stopped), then times
one acquire over the Unix socket to its 201. Prints p50/p99 of both, and their ratio.

    freeze.py --bin RELEASE_BIN_DIR [--rounds 40]
"""
import argparse, json, os, shutil, socket, subprocess, tempfile, time

from unix_http import unix_json as call


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def measure(sock, name, idle_state, rounds):
    """Milliseconds of each acquire made while the service is `idle_state`."""
    times = []
    for round in range(rounds + 1):
        deadline = time.time() + 30
        while round > 0 and call(sock, "GET", f"/v1/services/{name}")[1].get("state") != idle_state:
            if time.time() > deadline:
                raise RuntimeError(f"{name} never became {idle_state}")
            time.sleep(0.005)
        began = time.perf_counter()
        status, lease = call(sock, "POST", f"/v1/services/{name}/leases", {"ttl_ms": 60_000})
        elapsed = (time.perf_counter() - began) * 1000
        if status != 201:
            raise RuntimeError(f"acquire {name}: {status} {lease}")
        times.append(elapsed)
        call(sock, "DELETE", f"/v1/leases/{lease['id']}")
    return times[1:]  # the first is a cold start either way


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="prz-", dir="/tmp")
    daemon = None
    try:
        daemon = subprocess.Popen([f"{args.bin}/procrefd", "serve", "--state-dir", f"{work}/state", "--port", "0", "--log-level", "error"],
                                  stdout=subprocess.PIPE)
        json.loads(daemon.stdout.readline())
        sock = f"{work}/state/procrefd.sock"
        for name, idle in (("warm", "freeze"), ("cold", "stop")):
            port = free_port()
            status, body = call(sock, "PUT", f"/v1/services/{name}", {
                "start": ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                "health": {"tcp": f"127.0.0.1:{port}"}, "idle": idle,
            })
            if status != 201:
                raise RuntimeError(f"define {name}: {status} {body}")
        thaw = measure(sock, "warm", "frozen", args.rounds)
        cold = measure(sock, "cold", "stopped", args.rounds)
        print(f"warm idle: acquire of redis-server, {args.rounds} rounds each (Unix socket, to the 201)")
        print()
        print("| acquire | p50 ms | p99 ms |")
        print("|---|---:|---:|")
        print(f"| thaws a frozen service (idle = \"freeze\") | {percentile(thaw, 50):.2f} | {percentile(thaw, 99):.2f} |")
        print(f"| cold start (idle = \"stop\") | {percentile(cold, 50):.2f} | {percentile(cold, 99):.2f} |")
        print()
        print(f"thaw p50 is {percentile(cold, 50) / percentile(thaw, 50):.1f}x faster than a cold start (target: thaw p50 <= 2 ms)")
    finally:
        if daemon and daemon.poll() is None:
            daemon.terminate()
            daemon.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
