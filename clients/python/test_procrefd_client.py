#!/usr/bin/env python3
"""procrefd_client against a real procrefd: a lease taken and released, a wait that queues
for a slot, an error's fields, a process killed inside `with` whose lease ends, TCP with a
token, and following the event stream.

    test_procrefd_client.py --bin DIR_WITH_PROCREFD
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, threading, time, unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from procrefd_client import Procrefd, ProcrefdError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_SERVICE = os.path.join(ROOT, "Tests/IntegrationTests/Support/test_service.py")
BIN = ""


def eventually(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


class ClientTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.state = tempfile.mkdtemp(prefix="prd-py-", dir="/tmp")
        os.chmod(cls.state, 0o700)
        cls.daemon = subprocess.Popen([os.path.join(BIN, "procrefd"), "serve", "--state-dir", cls.state, "--port", "0", "--log-level", "error"],
                                      stdout=subprocess.PIPE)
        ready = json.loads(cls.daemon.stdout.readline())
        cls.port = int(ready["tcp"].rsplit(":", 1)[1])
        cls.pd = Procrefd(state_dir=cls.state)
        cls.children = []

    @classmethod
    def tearDownClass(cls):
        for child in cls.children:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
        cls.daemon.terminate()  # drains: leases revoked, services stopped, sets removed
        cls.daemon.wait(timeout=60)
        cls.daemon.stdout.close()
        shutil.rmtree(cls.state, ignore_errors=True)

    def define(self, name, **extra):
        sock = os.path.join(self.state, f"{name}.svc.sock")
        definition = {"start": ["python3", TEST_SERVICE, sock], "health": {"unix": sock}, "stop_timeout_ms": 3000}
        definition.update(extra)
        self.pd.define(name, definition)
        return name

    def test_lease_taken_and_released(self):
        name = self.define("py-lease")
        with self.pd.lease(name, holder="py-test") as lease:
            self.assertEqual(lease.count, 1)
            self.assertEqual(self.pd.service(name)["state"], "ready")
            held = self.pd.leases(name)
            self.assertEqual([(l["id"], l["client_pid"], l["holder"]) for l in held], [(lease.id, os.getpid(), "py-test")])
        self.assertTrue(lease.released)
        self.assertEqual(self.pd.leases(name), [])
        self.assertTrue(eventually(lambda: self.pd.service(name)["state"] == "stopped"))
        ttl = self.pd.acquire(name, ttl=30)
        self.assertEqual(ttl.keepalive()["id"], ttl.id)
        ttl.release()
        ttl.release()  # a second release does nothing

    def test_wait_queues_for_a_slot(self):
        name = "py-slot"
        self.pd.define(name, {"start": [], "slots": 1})
        first = self.pd.acquire(name, ttl=30)
        got = {}
        def waiter():
            with self.pd.lease(name, wait=20) as lease:
                got["lease"] = lease.id
                got["at"] = time.monotonic()
        thread = threading.Thread(target=waiter)
        thread.start()
        self.assertTrue(eventually(lambda: self.pd.service(name)["queued"] == 1))
        released_at = time.monotonic()
        first.release()
        thread.join(timeout=20)
        self.assertIn("lease", got)
        self.assertGreaterEqual(got["at"], released_at)

    def test_error_fields(self):
        with self.assertRaises(ProcrefdError) as caught:
            self.pd.acquire("py-no-such-service")
        error = caught.exception
        self.assertEqual(error.status, 404)
        self.assertEqual(error.type, "urn:procrefd:problem:unknown-service")
        self.assertTrue(error.title)
        self.assertIn("py-no-such-service", error.detail)
        with self.assertRaises(ProcrefdError) as caught:
            self.pd.acquire("py-lease-ttl", ttl=-1)
        self.assertGreaterEqual(caught.exception.status, 400)

    def test_process_killed_inside_with_ends_its_lease(self):
        name = self.define("py-killed")
        script = (f"import sys, time; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
                  f"from procrefd_client import Procrefd\n"
                  f"with Procrefd(state_dir={self.state!r}).lease({name!r}):\n"
                  f"    print('held', flush=True); time.sleep(60)\n")
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
        self.children.append(child)
        self.assertEqual(child.stdout.readline().strip(), b"held")
        self.assertEqual([l["client_pid"] for l in self.pd.leases(name)], [child.pid])
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        self.assertTrue(eventually(lambda: self.pd.leases(name) == []))
        kinds = [e["kind"] for e in self.pd.events(service=name)]
        self.assertIn("lease.client_exited", kinds)

    def test_tcp_needs_the_token(self):
        with open(os.path.join(self.state, "token")) as f:
            token = f.read().strip()
        remote = Procrefd(url=f"http://127.0.0.1:{self.port}", token=token)
        self.assertIsInstance(remote.services(), list)
        with self.assertRaises(ProcrefdError) as caught:
            Procrefd(url=f"http://127.0.0.1:{self.port}").define("py-tcp", {"start": ["sleep", "1"]})
        self.assertEqual(caught.exception.status, 401)

    def test_follow_yields_new_events(self):
        name = self.define("py-follow")
        newest = max([e["id"] for e in self.pd.events()] or [0])
        stream = self.pd.events(service=name, after=newest, follow=True)
        lease = self.pd.acquire(name, ttl=30)
        kinds = []
        for event in stream:
            kinds.append(event["kind"])
            if event["kind"] == "lease.acquired":
                break
        stream.close()
        lease.release()
        self.assertIn("lease.acquired", kinds)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    args, rest = ap.parse_known_args()
    BIN = args.bin
    result = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2).result
    print(f"python client: {result.testsRun - len(result.failures) - len(result.errors)} passed, {len(result.failures) + len(result.errors)} failed")
    sys.exit(0 if result.wasSuccessful() else 1)
