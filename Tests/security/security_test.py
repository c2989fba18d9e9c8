#!/usr/bin/env python3
"""What a stranger on the host tries, against a real procrefd (temporary state dir, ephemeral
loopback port), each checked for its refusal and for nothing having changed: no new event,
no kernel count, no process.

- A DNS-rebinding page: requests whose Host is the attacker's name, over TCP and the socket.
- A cross-site form POST relayed to the Unix socket (as a "local proxy" would), and one over
  TCP with a stolen-looking token but a foreign Origin.
- An LD_PRELOAD (and friends) definition through a confined API.

Usage: security_test.py --bin BIN_DIR
"""
import argparse, http.client, json, os, shutil, signal, subprocess, sys, tempfile, uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from unix_http import UnixHTTPConnection  # noqa: E402


class Daemon:
    def __init__(self, bin_dir, config=""):
        self.state = tempfile.mkdtemp(prefix="prd-sec-", dir="/tmp")
        os.chmod(self.state, 0o700)
        config_path = os.path.join(self.state, "procrefd.toml")
        with open(config_path, "w") as f:
            f.write(config)
        self.process = subprocess.Popen(
            [os.path.join(bin_dir, "procrefd"), "serve", "--state-dir", self.state, "--port", "0",
             "--log-level", "warning", "--config", config_path], stdout=subprocess.PIPE)
        ready = json.loads(self.process.stdout.readline())
        self.port = int(ready["tcp"].rsplit(":", 1)[1])
        self.token = open(os.path.join(self.state, "token")).read().strip()

    def request(self, method, path, body=None, headers=None, tcp=False, host=None):
        headers = dict(headers or {})
        if tcp:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        else:
            connection = UnixHTTPConnection(os.path.join(self.state, "procrefd.sock"))
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            connection.putheader("Host", host or ("127.0.0.1:%d" % self.port if tcp else "localhost"))
            data = body.encode() if isinstance(body, str) else (json.dumps(body).encode() if body is not None else b"")
            if body is not None and "Content-Type" not in headers:
                headers["Content-Type"] = "application/json"
            headers["Content-Length"] = str(len(data))
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders(data)
            response = connection.getresponse()
            raw = response.read()
            kind = response.getheader("Content-Type", "")
            return response.status, (json.loads(raw) if raw and "json" in kind else raw), kind
        finally:
            connection.close()

    def events(self):
        return self.request("GET", "/v1/events?limit=1000")[1]["events"]

    def count(self, name):
        return self.request("GET", "/v1/services/" + name)[1]["count"]

    def processes(self):
        """Pids of processes whose command line mentions the state dir (services, holders)."""
        found = set()
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    if self.state.encode() in open(f"/proc/{pid}/cmdline", "rb").read() and int(pid) != self.process.pid:
                        found.add(int(pid))
                except OSError:
                    pass
        return found

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.state, ignore_errors=True)


class Check:
    def __init__(self):
        self.passed, self.failed = 0, []

    def __call__(self, name, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed.append(name)
            print(f"security: FAILED: {name} {detail}", flush=True)


def unchanged(check, daemon, what, before_events, name, before_processes):
    check(f"{what}: no new event", len(daemon.events()) == before_events)
    check(f"{what}: kernel count unchanged", daemon.count(name) == 0)
    check(f"{what}: no new process", daemon.processes() <= before_processes, str(daemon.processes() - before_processes))


def run(args, check):
    # Confined: API services run only as nobody, and no code-loading environment.
    daemon = Daemon(args.bin, '[security]\napi_users = ["nobody"]\n')
    try:
        name = "sec-" + uuid.uuid4().hex[:8]
        status, body, _ = daemon.request("PUT", f"/v1/services/{name}", {"start": ["sleep", "600"], "user": "nobody"})
        check("service defined", status == 201, str(body))
        before, processes = len(daemon.events()), daemon.processes()

        # 1. DNS rebinding: the page's own name, re-resolved to 127.0.0.1.
        for tcp in (True, False):
            for method, path, payload in [("GET", "/v1/status", None), ("GET", "/v1/services", None),
                                          ("POST", f"/v1/services/{name}/leases", {"ttl_ms": 60000})]:
                headers = {"Authorization": "Bearer " + daemon.token} if tcp and method == "POST" else {}
                status, body, kind = daemon.request(method, path, payload, headers, tcp=tcp, host=f"rebind.attacker.example:{daemon.port}")
                check(f"rebinding {method} {path} over {'tcp' if tcp else 'unix'}: 421 problem",
                      status == 421 and kind == "application/problem+json", f"{status} {body!r}")
        unchanged(check, daemon, "rebinding", before, name, processes)

        # 2. A cross-site form POST relayed to the Unix socket, and over TCP with a foreign Origin.
        form_headers = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site",
                        "Content-Type": "application/x-www-form-urlencoded"}
        for path in [f"/v1/services/{name}/leases", f"/v1/services/{name}/restart", "/v1/daemon/stop"]:
            status, body, _ = daemon.request("POST", path, "mode=drain", form_headers)
            check(f"form POST {path} on the socket: 403", status == 403, f"{status} {body!r}")
            status, body, _ = daemon.request("POST", path, "{}", {"Origin": "https://evil.example",
                                                                   "Authorization": "Bearer " + daemon.token}, tcp=True)
            check(f"cross-origin POST {path} over tcp with the token: 403", status == 403, f"{status} {body!r}")
        check("daemon still running", daemon.process.poll() is None)
        unchanged(check, daemon, "cross-site", before, name, processes)

        # 3. Code injection through the environment of a confined definition.
        for key in ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "GCONV_PATH", "PYTHONPATH", "NODE_OPTIONS", "BASH_ENV"]:
            status, body, _ = daemon.request("PUT", f"/v1/services/{name}-ld", {
                "start": ["sleep", "600"], "user": "nobody", "env": {key: "/tmp/evil.so"}})
            check(f"{key} refused with 422 naming it", status == 422 and f"env.{key}" in body.get("detail", ""), f"{status} {body!r}")
        status, body, _ = daemon.request("PUT", f"/v1/services/{name}-root", {"start": ["sleep", "600"]})
        check("no user (root) refused with 403", status == 403, f"{status} {body!r}")
        status, _, _ = daemon.request("GET", f"/v1/services/{name}-ld")
        check("nothing defined", status == 404)
        unchanged(check, daemon, "LD_PRELOAD", before, name, processes)
    finally:
        daemon.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True)
    args = parser.parse_args()
    check = Check()
    try:
        run(args, check)
    except Exception as error:  # report, and fail
        import traceback
        traceback.print_exc()
        check.failed.append(f"exception: {error}")
    print(f"security: {check.passed} passed, {len(check.failed)} failed")
    sys.exit(1 if check.failed else 0)


if __name__ == "__main__":
    main()
