#!/usr/bin/env python3
"""Lease path benchmark: acquire+release latency on a ready service and holder memory.

Starts procrefd (from --bin) on a temporary state dir and an ephemeral loopback port,
defines a trivial service (a Unix socket listener), keeps one lease so the service stays
ready, then runs N acquire/release cycles over one keep-alive TCP connection and prints
p50/p99 of each step. Finally holds --hold leases and reports the holders' PSS.
Everything it starts is stopped and removed at the end.
"""
import argparse, http.client, json, os, shutil, signal, statistics, subprocess, sys, tempfile, time

def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]

def pss_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="directory holding procrefd and procref-holder")
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--hold", type=int, default=50)
    args = ap.parse_args()

    state = tempfile.mkdtemp(prefix="prb-", dir="/tmp")
    daemon = subprocess.Popen([f"{args.bin}/procrefd", "serve", "--state-dir", state, "--port", "0", "--log-level", "warning"],
                              stdout=subprocess.PIPE)
    service = f"bench-{os.getpid()}"
    try:
        ready = json.loads(daemon.stdout.readline())
        host, port = ready["tcp"].rsplit(":", 1)
        token = open(f"{state}/token").read().strip()
        conn = http.client.HTTPConnection(host, int(port))
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        def call(method, path, body=None):
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            if response.status >= 300:
                raise SystemExit(f"{method} {path}: {response.status} {data!r}")
            return json.loads(data)

        sock = f"{state}/svc.sock"
        script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen(64)\nwhile True: s.accept()[0].close()"
        call("PUT", f"/v1/services/{service}", {"start": ["python3", "-c", script, sock], "health": {"unix": sock}})
        t0 = time.perf_counter()
        anchor = call("POST", f"/v1/services/{service}/leases", {"holder": "anchor", "ttl_ms": 600000})
        cold_ms = (time.perf_counter() - t0) * 1000

        acquire, release, cycle = [], [], []
        for _ in range(args.cycles):
            a0 = time.perf_counter()
            lease = call("POST", f"/v1/services/{service}/leases", {"ttl_ms": 60000})
            a1 = time.perf_counter()
            call("DELETE", f"/v1/leases/{lease['id']}")
            a2 = time.perf_counter()
            acquire.append((a1 - a0) * 1000)
            release.append((a2 - a1) * 1000)
            cycle.append((a2 - a0) * 1000)

        held = [call("POST", f"/v1/services/{service}/leases", {"ttl_ms": 600000}) for _ in range(args.hold)]
        pss = [pss_kib(l["holder_pid"]) for l in held]
        daemon_rss = int([l for l in open(f"/proc/{daemon.pid}/status") if l.startswith("VmRSS:")][0].split()[1])

        print(f"procrefd lease benchmark ({args.cycles} cycles on a ready service, 1 keep-alive client, TCP loopback)")
        print(f"{'step':<22}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
        for name, values in (("acquire", acquire), ("release", release), ("acquire+release", cycle)):
            print(f"{name:<22}{pct(values, 50):>10.3f}{pct(values, 99):>10.3f}{statistics.mean(values):>10.3f}")
        print(f"cycles/s (1 client)   {1000 / statistics.mean(cycle):.0f}")
        print(f"cold acquire (service start included): {cold_ms:.1f} ms")
        print(f"holder PSS with {len(held) + 1} leases held: median {statistics.median(pss)} KiB, max {max(pss)} KiB")
        print(f"procrefd RSS with {len(held) + 1} leases held: {daemon_rss} KiB")
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        shutil.rmtree(state, ignore_errors=True)

if __name__ == "__main__":
    main()
