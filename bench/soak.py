#!/usr/bin/env python3
"""Chaos soak: concurrent clients take TTL and client-pid leases, keep them alive, release
them, while a chaos thread SIGKILLs holders, clients, service processes and procrefd itself
(restarting it each time).

At quiet points (clients and chaos paused) it checks, for every service:
  kernel count == live holders on its set == live leases listed, and the service runs
  exactly when something counts it (a lock, with no process: is ready exactly then), and
  nothing is left queued.
soak-front is redis-server behind a front door: clients also open connections through it,
hold them across quiet points and close them, and chaos kills its door too. There the
invariant is kernel count == live holders + the door's open connections, leases listed ==
holders, and connections == the soak's own live connections.
soak-g0, soak-g1 and soak-g2 share the capacity group soak (capacity 2, cost 1 each, some
lingering): a sampler reads the group every 50 ms, and the cost in use must never exceed
the capacity, nor may more than two of them have a live main process at once.
Two of the services have slots (soak-slots: 2, a process; soak-lock: 1, no process), and
their acquires queue with random wait_ms; a sampler reads their kernel counts (GETVAL)
every few milliseconds throughout: a count above the slots, at any instant, is a violation.
At the end: every acknowledged acquire and release is in the audit log under the right
kind, no lease ends twice, PRAGMA integrity_check is ok, and a drain leaves no semaphore
set, no holder and no service process.

Prints its seed and counts; exits 1 on any violation. Everything it starts is stopped and
removed at the end, and every request goes to loopback or the Unix socket.
"""
import argparse, ctypes, http.client, json, os, random, shutil, signal, socket, sqlite3, subprocess, sys, tempfile, threading, time
from collections import Counter, defaultdict

from procfs import alive, cmdline, holders_on, pids_mentioning
from unix_http import unix_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_SERVICE = os.path.join(ROOT, "Tests/IntegrationTests/Support/test_service.py")
END_KINDS = {"lease.released", "lease.expired", "lease.client_exited", "lease.lost", "lease.revoked"}
SLOTTED = {"soak-slots": 2, "soak-lock": 1}  # service -> slots; soak-lock has no process
FRONTED = "soak-front"  # redis-server behind a front door
MAX_FRONT_CONNECTIONS = 8
GROUPED = ["soak-g0", "soak-g1", "soak-g2"]  # capacity group "soak": 2 of them fit
GROUP_CAPACITY = 2
LIBC = ctypes.CDLL(None, use_errno=True)
GETVAL = 12


def kernel_count(semid):
    """GETVAL of semaphore 0 of the set, straight from the kernel (None once it is gone)."""
    value = LIBC.semctl(ctypes.c_int(semid), ctypes.c_int(0), ctypes.c_int(GETVAL))
    return None if value < 0 else value


class Daemon:
    """procrefd on a temporary state dir; restartable after a kill -9."""

    def __init__(self, bin_dir, state_dir, log, extra):
        self.bin_dir, self.state_dir, self.log, self.extra = bin_dir, state_dir, log, extra
        self.socket = os.path.join(state_dir, "procrefd.sock")
        self.process = None
        self.restarts = 0

    def start(self):
        self.process = subprocess.Popen(
            [os.path.join(self.bin_dir, "procrefd"), "serve", "--state-dir", self.state_dir, "--port", "0", "--log-level", "warning"] + self.extra,
            stdout=subprocess.PIPE, stderr=self.log)
        line = self.process.stdout.readline()
        if not line.startswith(b"{"):
            raise RuntimeError(f"procrefd did not start: {line!r}")

    def kill(self):
        self.process.kill()
        self.process.wait()
        self.restarts += 1

    def call(self, method, path, body=None, timeout=30):
        """(status, json) or (None, error text) when procrefd could not be reached."""
        try:
            return unix_json(self.socket, method, path, body, timeout)
        except (OSError, http.client.HTTPException, json.JSONDecodeError) as error:
            return None, str(error)


class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.state_dir = tempfile.mkdtemp(prefix="prd-soak-", dir="/tmp")
        os.chmod(self.state_dir, 0o700)
        self.log = open(os.path.join(self.state_dir, "procrefd.stderr"), "wb")
        config = os.path.join(self.state_dir, "procrefd.toml")
        with open(config, "w") as f:
            f.write(f"[groups.soak]\ncapacity = {GROUP_CAPACITY}\n")
        self.daemon = Daemon(args.bin, self.state_dir, self.log, ["--service-cgroups", args.service_cgroups, "--config", config])
        self.services = [f"soak-{i}" for i in range(args.services)] + list(SLOTTED) + GROUPED
        if shutil.which("redis-server"):
            self.services.append(FRONTED)
        self.counts = Counter()
        self.acked_acquires = {}  # lease id -> service
        self.acked_releases = set()
        self.lock = threading.Lock()
        self.clients = []  # client-pid processes (sleep), to kill and reap
        self.running = threading.Event()  # set while clients and chaos may act
        self.stop = threading.Event()
        self.in_flight = 0
        self.in_flight_changed = threading.Condition(self.lock)
        self.daemon_lock = threading.Lock()  # held while procrefd is being killed and restarted
        self.violations = []
        self.semids = {}
        self.front_port = None
        self.front_connections = []  # sockets open through soak-front's door, held across steps

    # --- set-up ---------------------------------------------------------------------
    def define(self):
        for name in self.services:
            sock = os.path.join(self.state_dir, f"{name}.svc.sock")
            definition = {
                "start": ["python3", TEST_SERVICE, sock], "health": {"unix": sock, "timeout_ms": 1000},
                "ready_timeout_ms": 15000, "stop_timeout_ms": 3000,
                "restart_backoff_ms": 50, "restart_backoff_max_ms": 500, "restart_limit": 1000, "restart_window_ms": 1000,
            }
            if name == "soak-lock":
                definition = {}
            if name == FRONTED:
                redis = os.path.join(self.state_dir, "soak-front.redis.sock")
                definition.update({
                    "start": ["redis-server", "--port", "0", "--unixsocket", redis, "--save", "", "--appendonly", "no"],
                    "health": {"unix": redis, "timeout_ms": 1000}, "front": ["127.0.0.1:0"], "upstream": f"unix:{redis}",
                })
            if name in SLOTTED:
                definition["slots"] = SLOTTED[name]
            if name in GROUPED:
                definition.update({"capacity_group": "soak", "linger_ms": 300 * GROUPED.index(name)})
            status, body = self.daemon.call("PUT", f"/v1/services/{name}", definition)
            if status != 201:
                raise RuntimeError(f"define {name}: {status} {body}")
            self.semids[name] = body["semid"]
            if name == FRONTED:
                _, status_body = self.daemon.call("GET", f"/v1/services/{name}")
                self.front_port = int(status_body["front"][0].rsplit(":", 1)[1])

    # --- clients ----------------------------------------------------------------------
    def note(self, key, n=1):
        with self.lock:
            self.counts[key] += n

    def act(self, body):
        """Runs one client or chaos step while the soak is not at a quiet point."""
        self.running.wait()
        with self.lock:
            self.in_flight += 1
        try:
            body()
        finally:
            with self.lock:
                self.in_flight -= 1
                self.in_flight_changed.notify_all()

    def client_loop(self, index):
        rng = random.Random(self.args.seed * 1000 + index)
        while not self.stop.is_set():
            self.act(lambda: self.client_step(rng))

    def client_step(self, rng):
        service = rng.choice(self.services)
        if service == FRONTED and rng.random() < 0.5:
            return self.front_step(rng)
        request = {"holder": "soak"}
        client = None
        if rng.random() < 0.4:
            client = subprocess.Popen(["sleep", "60"])
            with self.lock:
                self.clients.append(client)
            request["client_pid"] = client.pid
        else:
            request["ttl_ms"] = rng.randint(300, 3000)
        if (service in SLOTTED or service in GROUPED) and rng.random() < 0.7:
            request["wait_ms"] = rng.randint(50, 2000)
        status, body = self.daemon.call("POST", f"/v1/services/{service}/leases", request)
        if status != 201:
            self.note(f"acquire_{status}")
            if client:
                client.kill()
            time.sleep(0.05)
            return
        lease = body["id"]
        with self.lock:
            self.acked_acquires[lease] = service
            self.counts["acquired"] += 1
        time.sleep(rng.uniform(0, 0.4))
        choice = rng.random()
        if choice < 0.5:
            if "ttl_ms" in request and rng.random() < 0.5:
                status, _ = self.daemon.call("POST", f"/v1/leases/{lease}/keepalive")
                self.note(f"keepalive_{status}")
            status, _ = self.daemon.call("DELETE", f"/v1/leases/{lease}")
            if status == 200:
                with self.lock:
                    self.acked_releases.add(lease)
                    self.counts["released"] += 1
            else:
                self.note(f"release_{status}")
        elif choice < 0.7 and client:
            client.kill()  # the lease ends with its client
            self.note("client_exit")
        # else: left to expire, or to its client's later death

    def front_step(self, rng):
        """Opens a connection through the front door (a PING answered once the service is
        up), or closes one the soak holds."""
        with self.lock:
            open_now = len(self.front_connections)
            closing = self.front_connections.pop(rng.randrange(open_now)) if open_now and (open_now >= MAX_FRONT_CONNECTIONS or rng.random() < 0.4) else None
        if closing:
            closing.close()
            self.note("front_closed")
            return
        try:
            connection = socket.create_connection(("127.0.0.1", self.front_port), timeout=20)
            connection.sendall(b"PING\r\n")
            answer = connection.recv(16)
        except OSError:
            self.note("front_failed")
            return
        if answer != b"+PONG\r\n":
            connection.close()
            self.note("front_failed")  # the door or the service was killed meanwhile
            return
        with self.lock:
            self.front_connections.append(connection)
        self.note("front_opened")

    def live_front_connections(self):
        """Closes the soak's connections the other side ended (a killed door or service) and
        returns how many are still open."""
        with self.lock:
            kept = []
            for connection in self.front_connections:
                try:
                    connection.setblocking(False)
                    ended = connection.recv(1, socket.MSG_PEEK) == b""
                except BlockingIOError:
                    ended = False
                except OSError:
                    ended = True
                if ended:
                    connection.close()
                else:
                    kept.append(connection)
            self.front_connections = kept
            return len(kept)

    # --- chaos -------------------------------------------------------------------------
    def chaos_loop(self):
        while not self.stop.is_set():
            time.sleep(self.rng.uniform(0.3, 1.5))
            if self.stop.is_set():
                break
            self.act(self.chaos_step)

    def chaos_step(self):
        kind = self.rng.choices(["holder", "client", "service", "procrefd", "door"], weights=[4, 3, 3, 1, 1])[0]
        if kind == "holder":
            status, body = self.daemon.call("GET", "/v1/leases")
            if status == 200 and body.get("leases"):
                pid = self.rng.choice(body["leases"])["holder_pid"]
                self.kill(pid, "kill_holder")
        elif kind == "client":
            with self.lock:
                live = [c for c in self.clients if c.poll() is None]
            if live:
                self.rng.choice(live).kill()
                self.note("kill_client")
        elif kind == "service":
            status, body = self.daemon.call("GET", f"/v1/services/{self.rng.choice(self.services)}")
            if status == 200 and body.get("pid"):
                self.kill(body["pid"], "kill_service")
        elif kind == "door":
            doors = [pid for pid in pids_mentioning(self.state_dir) if cmdline(pid).split(b"\0")[0].endswith(b"procref-door")]
            if doors:
                self.kill(self.rng.choice(doors), "kill_door")
        else:
            with self.daemon_lock:
                self.daemon.kill()
                self.note("kill_procrefd")
                self.daemon.start()

    def kill(self, pid, what):
        try:
            os.kill(pid, signal.SIGKILL)
            self.note(what)
        except ProcessLookupError:
            pass

    def group_sample_loop(self):
        """Reads the capacity group every 50 ms, for the whole run: its cost in use, and the
        members' main processes, never above its capacity."""
        while not self.stop.is_set():
            status, body = self.daemon.call("GET", "/v1/groups", timeout=5)
            if status == 200:
                group = next((g for g in body["groups"] if g["name"] == "soak"), None)
                live = sum(1 for name in GROUPED for pid in pids_mentioning(f"{name}.svc.sock") if alive(pid))
                with self.lock:
                    self.counts["group_samples"] += 1
                    if group:
                        self.counts["max_group_in_use"] = max(self.counts["max_group_in_use"], group["in_use"])
                        if group["in_use"] > GROUP_CAPACITY:
                            self.violations.append(f"group soak: {group['in_use']} in use, above its capacity {GROUP_CAPACITY}")
                    self.counts["max_group_live_members"] = max(self.counts["max_group_live_members"], live)
                    if live > GROUP_CAPACITY:
                        self.violations.append(f"group soak: {live} members' processes alive at once, above its capacity {GROUP_CAPACITY}")
            time.sleep(0.05)

    def sample_loop(self):
        """Reads the slotted services' kernel counts every 2 ms, for the whole run."""
        while not self.stop.is_set():
            for name, slots in SLOTTED.items():
                count = kernel_count(self.semids[name])
                if count is None:
                    continue
                with self.lock:
                    self.counts["slot_samples"] += 1
                    self.counts[f"max_count_{name}"] = max(self.counts[f"max_count_{name}"], count)
                    if count > slots:
                        self.violations.append(f"{name}: kernel count {count} above its {slots} slots")
            time.sleep(0.002)

    # --- checks ------------------------------------------------------------------------
    def quiet_point(self):
        """Pauses everything, waits for the daemon to settle, then checks the invariant."""
        self.running.clear()
        with self.lock:
            self.in_flight_changed.wait_for(lambda: self.in_flight == 0, timeout=120)
        deadline = time.monotonic() + self.args.settle
        problems = self.invariant_problems()
        while problems and time.monotonic() < deadline:
            time.sleep(0.1)
            problems = self.invariant_problems()
        self.note("quiet_points")
        if problems:
            self.violations.append(f"quiet point at {time.strftime('%H:%M:%S')}: " + "; ".join(problems))
        self.reap_clients()
        self.running.set()

    def invariant_problems(self):
        problems = []
        for name in self.services:
            status, service = self.daemon.call("GET", f"/v1/services/{name}")
            status2, listed = self.daemon.call("GET", f"/v1/leases?service={name}")
            if status != 200 or status2 != 200:
                problems.append(f"{name}: procrefd unreachable ({status}, {status2})")
                continue
            count, holders, leases = service.get("count"), len(holders_on(service["semid"])), len(listed["leases"])
            if name == FRONTED:
                connections, ours = service.get("connections"), self.live_front_connections()
                if not (count == holders + (connections or 0) and leases == holders and connections == ours):
                    problems.append(f"{name}: kernel count {count}, live holders {holders}, connections {connections} "
                                    f"(the soak holds {ours}), leases listed {leases}")
                with self.lock:
                    self.counts["max_front_connections"] = max(self.counts["max_front_connections"], ours)
            elif not count == holders == leases:
                problems.append(f"{name}: kernel count {count}, live holders {holders}, leases listed {leases}")
            if name == "soak-lock":
                running = service.get("pid") is None and service["state"] == "ready"
            else:
                running = service.get("pid") is not None and alive(service["pid"]) and service["state"] == "ready"
            if running != (count > 0):
                problems.append(f"{name}: state {service['state']} pid {service.get('pid')} with count {count}")
            if name in SLOTTED and (count > SLOTTED[name] or service.get("queued") != 0):
                problems.append(f"{name}: count {count} with {SLOTTED[name]} slots, {service.get('queued')} queued at rest")
        return problems

    def reap_clients(self):
        with self.lock:
            self.clients = [c for c in self.clients if c.poll() is None]

    def audit_problems(self):
        problems = []
        events, after = [], 0
        while True:
            status, page = self.daemon.call("GET", f"/v1/events?after={after}&limit=1000")
            if status != 200:
                return [f"events: {status} {page}"]
            events += page["events"]
            if len(page["events"]) < 1000:
                break
            after = page["events"][-1]["id"]
        by_lease = defaultdict(list)
        for event in events:
            if event.get("lease"):
                by_lease[event["lease"]].append(event["kind"])
        for lease, service in self.acked_acquires.items():
            if "lease.acquired" not in by_lease[lease]:
                problems.append(f"acknowledged acquire {lease} has no lease.acquired")
        for lease in self.acked_releases:
            ends = [k for k in by_lease[lease] if k in END_KINDS]
            if ends != ["lease.released"]:
                problems.append(f"acknowledged release {lease} recorded as {ends}")
        for lease, kinds in by_lease.items():
            ends = [k for k in kinds if k in END_KINDS]
            if len(ends) > 1:
                problems.append(f"lease {lease} ended {len(ends)} times: {ends}")
        ends = Counter(k for kinds in by_lease.values() for k in kinds if k in END_KINDS)
        with self.lock:
            for kind, n in ends.items():
                self.counts[f"log_{kind}"] = n
        return problems

    def integrity(self):
        db = sqlite3.connect(f"file:{os.path.join(self.state_dir, 'procrefd.db')}?mode=ro", uri=True, timeout=30)
        try:
            return db.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            db.close()

    def drain_problems(self):
        problems = []
        status, body = self.daemon.call("POST", "/v1/daemon/stop", {"mode": "drain"})
        if status != 202 and status != 200:
            problems.append(f"drain request: {status} {body}")
        try:
            self.daemon.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            problems.append("procrefd did not exit after drain")
        for name, semid in self.semids.items():
            if holders_on(semid):
                problems.append(f"{name}: holders left {holders_on(semid)}")
        sets = subprocess.run(["ipcs", "-s"], capture_output=True, text=True).stdout.split()
        for name, semid in self.semids.items():
            if str(semid) in sets:
                problems.append(f"{name}: semaphore set {semid} left")
        left = pids_mentioning(self.state_dir)
        if left:
            problems.append(f"service processes left: {left}")
        return problems

    # --- run ------------------------------------------------------------------------------
    def run(self):
        self.daemon.start()
        self.define()
        threads = [threading.Thread(target=self.client_loop, args=(i,), daemon=True) for i in range(self.args.clients)]
        threads.append(threading.Thread(target=self.chaos_loop, daemon=True))
        threads.append(threading.Thread(target=self.sample_loop, daemon=True))
        threads.append(threading.Thread(target=self.group_sample_loop, daemon=True))
        self.running.set()
        for thread in threads:
            thread.start()
        began = time.monotonic()
        next_quiet = began + self.args.quiet_every
        while time.monotonic() - began < self.args.seconds:
            time.sleep(0.2)
            if time.monotonic() >= next_quiet:
                self.quiet_point()
                next_quiet = time.monotonic() + self.args.quiet_every
        self.stop.set()
        self.running.set()
        for thread in threads:
            thread.join(timeout=60)
        with self.lock:
            for client in self.clients:
                client.kill()
            for connection in self.front_connections:
                connection.close()
            self.front_connections = []
        self.quiet_point()
        self.violations += self.audit_problems()
        check = self.integrity()
        if check != "ok":
            self.violations.append(f"integrity_check: {check}")
        # procrefd was killed mid-commit again and again: the hash chain must still be whole.
        verify = subprocess.run([os.path.join(self.args.bin, "procrefd"), "events", "verify", "--state-dir", self.state_dir],
                                capture_output=True, text=True)
        self.counts["chain_verified"] = 1 if verify.returncode == 0 else 0
        if verify.returncode != 0:
            self.violations.append(f"events verify: {verify.stdout.strip()} {verify.stderr.strip()}")
        self.violations += self.drain_problems()

    def cleanup(self):
        for client in self.clients:
            client.kill()
            client.wait()
        if self.daemon.process and self.daemon.process.poll() is None:
            self.daemon.process.kill()
            self.daemon.process.wait()
        for name, semid in self.semids.items():
            for pid in holders_on(semid):
                os.kill(pid, signal.SIGKILL)
            subprocess.run(["ipcrm", "-s", str(semid)], capture_output=True)
        for pid in pids_mentioning(self.state_dir):
            os.kill(pid, signal.SIGKILL)
        self.log.close()
        if self.violations:
            kept = self.state_dir + ".failed"
            shutil.rmtree(kept, ignore_errors=True)
            shutil.move(self.state_dir, kept)
            print(f"state dir kept for inspection: {kept}")
        else:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="directory with procrefd and procref-holder")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--services", type=int, default=2)
    ap.add_argument("--service-cgroups", choices=["auto", "off"], default="auto", help="procrefd's service tracking")
    ap.add_argument("--quiet-every", type=float, default=10, help="seconds between quiet-point checks")
    ap.add_argument("--settle", type=float, default=15, help="how long a quiet point waits for the invariant")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1 << 31)
    soak = Soak(args)
    began = time.monotonic()
    try:
        soak.run()
    finally:
        soak.cleanup()
    counts = dict(sorted(soak.counts.items()))
    print(f"soak: seed {args.seed}, {time.monotonic() - began:.0f} s, {args.clients} clients, {len(soak.services)} services, "
          f"service cgroups {args.service_cgroups}")
    print("soak counts: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    for violation in soak.violations:
        print(f"VIOLATION: {violation}")
    print(f"soak: {1 if not soak.violations else 0} passed, {1 if soak.violations else 0} failed")
    sys.exit(1 if soak.violations else 0)


if __name__ == "__main__":
    main()
