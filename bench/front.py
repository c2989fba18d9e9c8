#!/usr/bin/env python3
"""Front-door benchmark: redis-benchmark against redis directly, through procrefd's front door,
through systemd-socket-proxyd and through HAProxy in TCP mode, all in one run.

Prints a Markdown table (requests/s per test and path, with the ratio to direct), new
connections per second through each path (redis-benchmark --keepalive 0), and the forwarding
process's CPU per request (utime+stime of procref-door, systemd-socket-proxyd or haproxy,
read from /proc, over the requests it forwarded), and the latency a path adds: GET's p50 at
one client (no queueing) minus direct's. With PostgreSQL installed, `pgbench -S -c 8 -T 10`
through the same four paths too (transactions per second, and the forwarder's CPU per
transaction). Everything it starts is stopped and its temp dir removed at the end.

    front.py --bin RELEASE_BIN_DIR [--requests 200000] [--clients 50] [--pgbench-seconds 10]
"""
import argparse, glob, json, os, pwd, re, shutil, signal, socket, subprocess, tempfile, time

TESTS = ["PING_INLINE", "PING_MBULK", "SET", "GET"]
CLOCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK


def redis_benchmark(port, clients, requests, keepalive=True, tests="ping,set,get"):
    out = subprocess.run(["redis-benchmark", "-q", "-p", str(port), "-t", tests, "-c", str(clients), "-n", str(requests)]
                         + ([] if keepalive else ["-k", "0"]), capture_output=True, text=True, timeout=600).stdout
    rates, p50s = {}, {}
    for line in out.replace("\r", "\n").splitlines():
        if "requests per second" in line and ":" in line:
            name, rest = line.split(":", 1)
            rates[name.strip()] = float(rest.split("requests per second")[0].strip())
            if "p50=" in rest:
                p50s[name.strip()] = float(rest.split("p50=")[1].split()[0])
    return rates, p50s


def postgres_bin():
    """The directory of Debian's PostgreSQL server programs, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return os.path.dirname(found[-1]) if found else None


def as_postgres(argv):
    """`argv` as the postgres user when this runs as root (PostgreSQL refuses root)."""
    return ["runuser", "-u", "postgres", "--"] + argv if os.geteuid() == 0 else argv


def postgres_argv(pg_bin, data, port, sockets):
    return [f"{pg_bin}/postgres", "-D", data, "-p", str(port), "-k", sockets, "-c", "listen_addresses=127.0.0.1",
            "-c", "fsync=off", "-c", "shared_buffers=32MB", "-c", "max_connections=50"]


def pgbench(port, seconds, clients=8):
    """Read-only pgbench transactions per second against 127.0.0.1:port."""
    out = subprocess.run(["pgbench", "-S", "-c", str(clients), "-j", "2", "-T", str(seconds), "-h", "127.0.0.1", "-p", str(port),
                          "-U", "bench", "postgres"], capture_output=True, text=True, timeout=seconds + 120)
    match = re.search(r"tps = ([0-9.]+)", out.stdout)
    if not match:
        raise RuntimeError(f"pgbench on {port}: {out.stdout[-300:]} {out.stderr[-300:]}")
    return float(match.group(1))


def proxyd_on(port, target):
    """systemd-socket-proxyd takes its listening socket from systemd: hand it one as fd 3."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    fd = listener.fileno()
    proxyd = subprocess.Popen(
        ["/bin/sh", "-c", f"exec 3<&{fd}; LISTEN_PID=$$ LISTEN_FDS=1 exec /lib/systemd/systemd-socket-proxyd 127.0.0.1:{target}"],
        pass_fds=[fd])
    listener.close()
    return proxyd


def find_door(upstream_port):
    """The pid of the procref-door that forwards to 127.0.0.1:upstream_port."""
    return int(subprocess.run(["pgrep", "-f", f"procref-door .* 127.0.0.1:{upstream_port} "], capture_output=True, text=True).stdout.split()[0])


def print_pgbench(pg, pg_bin, seconds, door_of, proxyd, haproxy):
    """pgbench -S through the four paths: tps, the ratio to direct, the forwarder's CPU per
    transaction."""
    for port in (pg["direct"], pg["front"]):  # the front starts its cluster: the first connection waits for it
        init = subprocess.run(["pgbench", "-i", "-s", "1", "-q", "-h", "127.0.0.1", "-p", str(port), "-U", "bench", "postgres"],
                              capture_output=True, text=True, timeout=120)
        if init.returncode != 0:
            raise RuntimeError(f"pgbench -i on port {port}: {init.stderr.strip()[-500:]}")
    paths = [("direct", pg["direct"], None), ("procrefd front", pg["front"], door_of(pg["behind"])),
             ("systemd-socket-proxyd", pg["proxyd"], proxyd), ("HAProxy (TCP mode)", pg["haproxy"], haproxy)]
    print(f"pgbench -S -c 8 -j 2 -T {seconds} (read-only, scale 1, fsync off) per path")
    print()
    print("| path | tps | × direct | forwarder CPU µs/transaction |")
    print("|---|---:|---:|---:|")
    direct = None
    for name, port, pid in paths:
        before = cpu_seconds(pid) if pid else 0
        tps = pgbench(port, seconds)
        cpu = (cpu_seconds(pid) - before) / (tps * seconds) * 1e6 if pid else None
        direct = direct or tps
        print(f"| {name} | {tps:,.0f} | {tps / direct:.2f} | {'-' if cpu is None else f'{cpu:.1f}'} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--pgbench-seconds", type=int, default=10, help="0: no pgbench")
    args = ap.parse_args()
    pg_bin = postgres_bin() if args.pgbench_seconds > 0 and shutil.which("pgbench") else None
    work = tempfile.mkdtemp(prefix="prf-", dir="/tmp")
    started = []
    try:
        redis_port, front_port, proxyd_port, haproxy_port = free_port(), free_port(), free_port(), free_port()
        # procrefd starts its own redis through the front; the others forward to a second one.
        direct_port = free_port()
        started.append(subprocess.Popen(["redis-server", "--port", str(direct_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                                        stdout=subprocess.DEVNULL))
        config = f"""[services.cache]
start = ["redis-server", "--port", "{redis_port}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
health = {{ tcp = "127.0.0.1:{redis_port}" }}
front = ["127.0.0.1:{front_port}"]
upstream = "127.0.0.1:{redis_port}"
linger_ms = 600000
"""
        if pg_bin:
            # Two clusters: one behind procrefd's front (procrefd starts it), one the other
            # paths forward to.
            os.chmod(work, 0o755)
            pg = {key: free_port() for key in ("direct", "behind", "front", "proxyd", "haproxy")}
            for cluster in ("direct", "behind"):
                os.makedirs(f"{work}/{cluster}")
                if os.geteuid() == 0:
                    shutil.chown(f"{work}/{cluster}", "postgres", "postgres")
                subprocess.run(as_postgres([f"{pg_bin}/initdb", "-D", f"{work}/{cluster}/data", "-U", "bench", "--auth=trust", "-N"]),
                               check=True, capture_output=True)
            started.append(subprocess.Popen(as_postgres(postgres_argv(pg_bin, f"{work}/direct/data", pg["direct"], f"{work}/direct")),
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            user = 'user = "postgres"\n' if os.geteuid() == 0 else ""
            config += f"""
[services.pg]
start = {json.dumps(postgres_argv(pg_bin, f"{work}/behind/data", pg["behind"], f"{work}/behind"))}
{user}health = {{ exec = ["{pg_bin}/pg_isready", "-q", "-h", "127.0.0.1", "-p", "{pg["behind"]}"] }}
front = ["127.0.0.1:{pg["front"]}"]
upstream = "127.0.0.1:{pg["behind"]}"
linger_ms = 600000
ready_timeout_ms = 60000
"""
        with open(f"{work}/procrefd.toml", "w") as f:
            f.write(config)
        daemon = subprocess.Popen([f"{args.bin}/procrefd", "serve", "--state-dir", f"{work}/state", "--port", "0",
                                   "--config", f"{work}/procrefd.toml", "--log-level", "error"], stdout=subprocess.PIPE)
        started.append(daemon)
        json.loads(daemon.stdout.readline())
        proxyd = proxyd_on(proxyd_port, direct_port)
        started.append(proxyd)
        pg_proxyd = proxyd_on(pg["proxyd"], pg["direct"]) if pg_bin else None
        if pg_proxyd:
            started.append(pg_proxyd)
        with open(f"{work}/haproxy.cfg", "w") as f:
            f.write(f"""global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
listen redis
    bind 127.0.0.1:{haproxy_port}
    server r1 127.0.0.1:{direct_port}
""")
            if pg_bin:
                f.write(f"""listen pg
    bind 127.0.0.1:{pg["haproxy"]}
    server p1 127.0.0.1:{pg["direct"]}
""")
        haproxy = subprocess.Popen(["haproxy", "-f", f"{work}/haproxy.cfg", "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(haproxy)
        for port in (direct_port, proxyd_port, haproxy_port) + ((pg["direct"],) if pg_bin else ()):
            wait_port(port, timeout=60)
        # The first connection starts redis behind the front.
        subprocess.run(["redis-cli", "-p", str(front_port), "ping"], capture_output=True, timeout=30)
        door = find_door(redis_port)

        paths = [("direct", direct_port, None), ("procrefd front", front_port, door),
                 ("systemd-socket-proxyd", proxyd_port, proxyd.pid), ("HAProxy (TCP mode)", haproxy_port, haproxy.pid)]
        results = {}
        for name, port, pid in paths:
            before = cpu_seconds(pid) if pid else 0
            rates, p50s = redis_benchmark(port, args.clients, args.requests)
            cpu = cpu_seconds(pid) - before if pid else 0
            # Added latency without queueing: one client, one request at a time.
            _, single = redis_benchmark(port, 1, max(args.requests // 10, 5000), tests="get")
            conns = redis_benchmark(port, 20, max(args.requests // 20, 2000), keepalive=False, tests="ping")[0].get("PING_INLINE", 0)
            results[name] = (rates, cpu / (args.requests * 4) * 1e6 if pid else None, conns, single.get("GET"))

        print(f"front door benchmark: redis-benchmark -q -t ping,set,get -c {args.clients} -n {args.requests:,} per path; "
              f"new connections: -c 20 --keepalive 0 -t ping")
        print()
        print("| path | " + " | ".join(f"{t} req/s" for t in TESTS)
              + " | × direct (min) | forwarder CPU µs/request | new connections/s | GET p50 at 1 client, µs (added) |")
        print("|---|" + "---:|" * (len(TESTS) + 4))
        direct, direct_p50 = results["direct"][0], results["direct"][3]
        for name, _, _ in paths:
            rates, cpu, conns, p50 = results[name]
            ratio = min(rates.get(t, 0) / direct[t] for t in TESTS if direct.get(t)) if name != "direct" else 1.0
            cells = " | ".join(f"{rates.get(t, 0):,.0f}" for t in TESTS)
            latency = "-" if p50 is None else f"{p50 * 1000:.0f}" + ("" if name == "direct" or direct_p50 is None else f" (+{(p50 - direct_p50) * 1000:.0f})")
            print(f"| {name} | {cells} | {ratio:.2f} | {'-' if cpu is None else f'{cpu:.1f}'} | {conns:,.0f} | {latency} |")
        if pg_bin:
            print()
            print_pgbench(pg, pg_bin, args.pgbench_seconds, door_of=find_door, proxyd=pg_proxyd.pid, haproxy=haproxy.pid)
    finally:
        for process in reversed(started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
