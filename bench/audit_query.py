#!/usr/bin/env python3
"""Audit log benchmark: filtered event queries over a large log, and long-poll wake-up.

Creates a state dir, lets procrefd create its schema, fills the events table with
--events synthetic rows (200 services, 8 kinds, 50k leases, pids, times over 30 days),
restarts procrefd on it and times filtered pages over HTTP (p50/p99 of --repeat requests
each), then times how soon a long-poll returns after an event is committed.
Everything it starts is stopped and removed at the end.
"""
import argparse, http.client, json, os, random, shutil, signal, sqlite3, statistics, subprocess, tempfile, threading, time, urllib.parse

KINDS = ["lease.acquired", "lease.released", "lease.expired", "lease.keepalive",
         "service.starting", "service.ready", "service.stopping", "service.stopped"]

def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]

def start(binary, state):
    daemon = subprocess.Popen([f"{binary}/procrefd", "serve", "--state-dir", state, "--port", "0", "--log-level", "warning"],
                              stdout=subprocess.PIPE)
    ready = json.loads(daemon.stdout.readline())
    host, port = ready["tcp"].rsplit(":", 1)
    return daemon, host, int(port)

def stop(daemon):
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=60)
    except subprocess.TimeoutExpired:
        daemon.kill()

def fill(db_path, count):
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA synchronous=OFF")
    base = time.time() - 30 * 86400
    rng = random.Random(7)
    rows = []
    for i in range(count):
        t = base + i * (30 * 86400 / count)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)
        lease = f"l_{rng.randrange(50000):08x}"
        rows.append((stamp, KINDS[i % len(KINDS)], f"svc-{i % 200}", lease, 1000 + rng.randrange(30000), "unix-socket", '{"count":1}'))
        if len(rows) == 50000:
            db.executemany("INSERT INTO events (time, kind, service, lease, pid, actor, detail) VALUES (?,?,?,?,?,?,?)", rows)
            rows = []
    if rows:
        db.executemany("INSERT INTO events (time, kind, service, lease, pid, actor, detail) VALUES (?,?,?,?,?,?,?)", rows)
    db.commit()
    db.execute("ANALYZE")
    db.close()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()
    state = tempfile.mkdtemp(prefix="pra-", dir="/tmp")
    daemon = None
    try:
        daemon, _, _ = start(args.bin, state)
        stop(daemon)
        t0 = time.perf_counter()
        fill(f"{state}/procrefd.db", args.events)
        fill_s = time.perf_counter() - t0
        daemon, host, port = start(args.bin, state)
        conn = http.client.HTTPConnection(host, port)
        # Reads over TCP need a token (the admin one here).
        token = open(f"{state}/token").read().strip()
        auth = {"Authorization": f"Bearer {token}"}
        mid = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 15 * 86400))
        end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 14 * 86400))
        queries = {
            "latest page (no filter, desc)": "order=desc&limit=100",
            "service, first page": "service=svc-42&limit=100",
            "service, deep cursor": f"service=svc-42&after={args.events // 2}&limit=100",
            "kind prefix lease.*": "kind=lease.*&after=%d&limit=100" % (args.events // 3),
            "two kinds": "kind=service.ready&kind=lease.expired&limit=100",
            "rare kind (daemon.started)": "kind=daemon.started&limit=100",
            "lease": "lease=l_00000abc&limit=100",
            "pid": "pid=12345&limit=100",
            "time window (1 day)": f"since={mid}&until={end}&limit=100",
            "service + kind + time": f"service=svc-7&kind=lease.acquired&since={mid}&limit=100",
        }
        print(f"procrefd audit query benchmark: {args.events:,} events (filled in {fill_s:.1f} s), {args.repeat} requests per query, HTTP keep-alive over TCP loopback")
        print(f"{'query':<32}{'p50 ms':>9}{'p99 ms':>9}{'rows':>7}")
        for name, query in queries.items():
            times = []
            rows = 0
            for _ in range(args.repeat):
                t = time.perf_counter()
                conn.request("GET", "/v1/events?" + query, headers=auth)
                response = conn.getresponse()
                body = json.loads(response.read())
                times.append((time.perf_counter() - t) * 1000)
                if "events" not in body:
                    raise SystemExit(f"{name}: HTTP {response.status}: {body}")
                rows = len(body["events"])
            print(f"{name:<32}{pct(times, 50):>9.2f}{pct(times, 99):>9.2f}{rows:>7}")

        # Long-poll wake-up: a poller waits; a define commits an event; time poll return - define start.
        wakes = []
        for i in range(20):
            conn.request("GET", "/v1/events?order=desc&limit=1", headers=auth)
            last = json.loads(conn.getresponse().read())["next_after"]
            box = {}
            def poll():
                c = http.client.HTTPConnection(host, port)
                c.request("GET", f"/v1/events?after={last}&wait_ms=10000", headers=auth)
                c.getresponse().read()
                box["t"] = time.perf_counter()
            th = threading.Thread(target=poll)
            th.start()
            time.sleep(0.05)
            t = time.perf_counter()
            conn.request("PUT", f"/v1/services/lp-{i}", body=json.dumps({"start": ["true"]}),
                         headers={**auth, "Content-Type": "application/json"})
            conn.getresponse().read()
            th.join()
            wakes.append((box["t"] - t) * 1000)
        print(f"long-poll wake-up after a commit: p50 {pct(wakes, 50):.2f} ms, max {max(wakes):.2f} ms (includes the define request)")
    finally:
        if daemon and daemon.poll() is None:
            stop(daemon)
        shutil.rmtree(state, ignore_errors=True)

if __name__ == "__main__":
    main()
