#!/usr/bin/env python3
"""Flood test: --requests acquire requests over --connections keep-alive TCP connections
against one service limited to --limit leases. Checks, and exits non-zero if any fails:
  - exactly --limit acquires are granted; every other request gets 429 problem+json;
  - GET /v1/health keeps answering during the flood (its worst latency is printed);
  - afterwards the kernel count equals the lease table, holders on the set equal the leases;
  - after releasing everything: count 0, no holder left, procrefd's descriptors back to
    where they started (within a small margin).
Prints throughput and latencies. Everything it starts is stopped and removed at the end.
"""
import argparse, asyncio, json, os, shutil, signal, statistics, subprocess, sys, tempfile, time

from procfs import holders_on

def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else 0.0

def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))

async def request(reader, writer, method, path, token, body=None):
    payload = json.dumps(body).encode() if body is not None else b""
    head = (f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Length: {len(payload)}\r\nContent-Type: application/json\r\n\r\n").encode()
    writer.write(head + payload)
    await writer.drain()
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    headers = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    data = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, data

async def flood(host, port, token, service, total, connections):
    counts = {"granted": 0, "refused": 0, "other": []}
    latencies = []
    leases = []
    per_connection = total // connections

    async def worker():
        reader, writer = await asyncio.open_connection(host, port)
        for _ in range(per_connection):
            t = time.perf_counter()
            status, headers, data = await request(reader, writer, "POST", f"/v1/services/{service}/leases", token, {"ttl_ms": 600000})
            latencies.append((time.perf_counter() - t) * 1000)
            if status == 201:
                counts["granted"] += 1
                leases.append(json.loads(data)["id"])
            elif status == 429 and headers.get("content-type") == "application/problem+json" and headers.get("retry-after"):
                counts["refused"] += 1
            else:
                counts["other"].append((status, data[:200]))
        writer.close()

    health = []
    stop = asyncio.Event()

    async def prober():
        reader, writer = await asyncio.open_connection(host, port)
        while not stop.is_set():
            t = time.perf_counter()
            status, _, _ = await request(reader, writer, "GET", "/v1/health", token)
            health.append(((time.perf_counter() - t) * 1000, status))
            await asyncio.sleep(0.05)
        writer.close()

    probe = asyncio.create_task(prober())
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - t0
    stop.set()
    await probe
    return counts, latencies, leases, health, elapsed

async def release_all(host, port, token, leases):
    reader, writer = await asyncio.open_connection(host, port)
    bad = 0
    for lease in leases:
        status, _, _ = await request(reader, writer, "DELETE", f"/v1/leases/{lease}", token)
        bad += status != 200
    writer.close()
    return bad

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--limit", type=int, default=100)
    args = ap.parse_args()
    state = tempfile.mkdtemp(prefix="prfl-", dir="/tmp")
    os.chmod(state, 0o700)
    with open(f"{state}/flood.toml", "w") as f:
        f.write(f"[limits]\nmax_leases_per_service = {args.limit}\nconnection_limit = {args.connections + 50}\n")
    daemon = subprocess.Popen([f"{args.bin}/procrefd", "serve", "--state-dir", state, "--port", "0",
                               "--config", f"{state}/flood.toml", "--log-level", "error"], stdout=subprocess.PIPE)
    failures = []
    service = f"flood-{os.getpid()}"
    try:
        ready = json.loads(daemon.stdout.readline())
        host, port = ready["tcp"].rsplit(":", 1)
        port = int(port)
        token = open(f"{state}/token").read().strip()
        sock = f"{state}/svc.sock"
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "unix_service.py")
        async def define():
            reader, writer = await asyncio.open_connection(host, port)
            status, _, _ = await request(reader, writer, "PUT", f"/v1/services/{service}", token,
                                         {"start": ["python3", script, sock], "health": {"unix": sock}})
            writer.close()
            return status
        assert asyncio.run(define()) == 201
        # One acquire/release first, so that the service runs and the idle-holder pool is
        # full: the descriptor baseline then includes them.
        async def warm_up():
            reader, writer = await asyncio.open_connection(host, port)
            status, _, data = await request(reader, writer, "POST", f"/v1/services/{service}/leases", token, {"ttl_ms": 60000})
            assert status == 201, data
            await request(reader, writer, "DELETE", f"/v1/leases/{json.loads(data)['id']}", token)
            writer.close()
        asyncio.run(warm_up())
        time.sleep(1)
        fds_before = fd_count(daemon.pid)

        counts, latencies, leases, health, elapsed = asyncio.run(
            flood(host, port, token, service, args.requests, args.connections))

        async def service_status():
            reader, writer = await asyncio.open_connection(host, port)
            _, _, data = await request(reader, writer, "GET", f"/v1/services/{service}", token)
            writer.close()
            return json.loads(data)
        status = asyncio.run(service_status())
        holders = holders_on(status["semid"])
        print(f"procrefd flood: {args.requests:,} acquires over {args.connections} connections, limit {args.limit} leases")
        print(f"  {elapsed:.2f} s, {args.requests / elapsed:,.0f} requests/s; latency p50 {pct(latencies, 50):.2f} ms, p99 {pct(latencies, 99):.2f} ms, max {max(latencies):.1f} ms")
        print(f"  granted {counts['granted']}, refused 429 {counts['refused']}, other {len(counts['other'])}")
        health_ms = [h[0] for h in health]
        print(f"  /v1/health during the flood: {len(health)} probes, all 200: {all(h[1] == 200 for h in health)}, p50 {pct(health_ms, 50):.2f} ms, max {max(health_ms):.1f} ms")
        print(f"  kernel count {status['count']}, lease table {status['leases']}, holders on the set {len(holders)}")
        if counts["granted"] != args.limit: failures.append(f"granted {counts['granted']} != limit {args.limit}")
        if counts["other"]: failures.append(f"unexpected answers: {counts['other'][:3]}")
        if counts["granted"] + counts["refused"] != args.requests: failures.append("not every request was answered")
        if not health or not all(h[1] == 200 for h in health): failures.append("health did not answer 200 throughout")
        if not (status["count"] == status["leases"] == len(holders) == counts["granted"]):
            failures.append("kernel count, lease table and holders disagree")

        bad = asyncio.run(release_all(host, port, token, leases))
        deadline = time.time() + 10
        while time.time() < deadline and (holders_on(status["semid"]) or fd_count(daemon.pid) > fds_before + 5):
            time.sleep(0.05)
        after = asyncio.run(service_status())
        fds_after = fd_count(daemon.pid)
        left = holders_on(status["semid"])
        print(f"  after releasing: count {after['count']}, holders left {len(left)}, procrefd fds {fds_before} → {fds_after}")
        if bad: failures.append(f"{bad} releases failed")
        if after["count"] != 0 or left: failures.append("count or holders left after release")
        if fds_after > fds_before + 5: failures.append(f"descriptors leaked: {fds_before} → {fds_after}")
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
        shutil.rmtree(state, ignore_errors=True)
    if failures:
        print("FAILED: " + "; ".join(failures))
        sys.exit(1)
    print("flood: 1 passed, 0 failed")

if __name__ == "__main__":
    main()
