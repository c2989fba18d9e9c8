#!/usr/bin/env python3
"""The dashboard in a real browser: Debian's headless Chromium and chromium-driver, driven by
selenium, against a real procrefd on a temporary state dir and an ephemeral loopback port.

Checks: the page loads with no console error and with its security headers; without a token
it lists services and says the audit log needs one; with the read token, a lease taken
with the API shows its count on the page within 1 s, without a reload, and its release shows
`stopped`; the audit filter `lease.*` shows only lease events and is kept in the URL; the
actions appear only with the admin token, and Restart and Release from the page act; with
`tcp_reads_need_token` the page asks for a token and works read-only with the read token.
Saves a screenshot (ARTIFACTS/dashboard.png). Everything it starts is stopped and removed.
Usage: dashboard_test.py --bin BIN_DIR --artifacts DIR
"""
import argparse, http.client, json, os, shutil, signal, subprocess, sys, tempfile, time, traceback, uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from unix_http import UnixHTTPConnection  # noqa: E402

os.environ.setdefault("SE_OFFLINE", "true")  # never let selenium fetch a browser or driver
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select


class Check:
    def __init__(self):
        self.passed, self.failed = 0, []

    def __call__(self, name, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed.append(f"{name} {detail}".strip())
            print(f"ui: FAILED: {name} {detail}", flush=True)
        return ok


def wait_for(condition, timeout):
    """Polls `condition` until it is true or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # the page may be re-rendering the element
            value = None
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.02)


class Daemon:
    def __init__(self, bin_dir, config=""):
        self.state = tempfile.mkdtemp(prefix="prd-ui-", dir="/tmp")
        os.chmod(self.state, 0o700)
        extra = []
        if config:
            with open(os.path.join(self.state, "procrefd.toml"), "w") as f:
                f.write(config)
            extra = ["--config", os.path.join(self.state, "procrefd.toml")]
        self.process = subprocess.Popen(
            [os.path.join(bin_dir, "procrefd"), "serve", "--state-dir", self.state, "--port", "0", "--log-level", "warning"] + extra,
            stdout=subprocess.PIPE)
        ready = json.loads(self.process.stdout.readline())
        self.port = int(ready["tcp"].rsplit(":", 1)[1])
        self.token = open(os.path.join(self.state, "token")).read().strip()

    def call(self, method, path, body=None):
        connection = UnixHTTPConnection(os.path.join(self.state, "procrefd.sock"))
        try:
            connection.request(method, path, body=json.dumps(body) if body is not None else None,
                               headers={"Content-Type": "application/json"} if body is not None else {})
            response = connection.getresponse()
            data = response.read()
            return response.status, json.loads(data) if data and response.getheader("Content-Type", "").endswith("json") else data
        finally:
            connection.close()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # drain: leases revoked, services stopped, sets removed
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.state, ignore_errors=True)


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1100"]:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def service_cells(driver, name):
    row = driver.find_element(By.CSS_SELECTOR, f'#services tr[data-service="{name}"]')
    return [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]


def group_cells(driver, group):
    rows = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in driver.find_elements(By.CSS_SELECTOR, "#groups tbody tr")]
    return next((cells for cells in rows if cells and cells[0] == group), [])


def run(args, check):
    daemon = Daemon(args.bin, "[groups.ui-gpu]\ncapacity = 4\n")
    driver = None
    try:
        name = "ui-" + uuid.uuid4().hex[:8]
        status, _ = daemon.call("PUT", f"/v1/services/{name}", {
            "start": ["sleep", "600"], "stop_timeout_ms": 2000, "capacity_group": "ui-gpu", "cost": 3})
        check("service defined", status == 201, str(status))

        # Headers of the page itself: no inline script or eval, no frames, no CORS.
        connection = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
        connection.request("GET", "/")
        page = connection.getresponse()
        page.read()
        policy = page.getheader("Content-Security-Policy", "")
        check("page served", page.status == 200 and page.getheader("Content-Type", "").startswith("text/html"))
        check("CSP: scripts only from the daemon, never framed",
              "script-src 'self'" in policy and "unsafe" not in policy and "frame-ancestors 'none'" in policy, policy)
        check("nosniff", page.getheader("X-Content-Type-Options") == "nosniff")
        check("no CORS", page.getheader("Access-Control-Allow-Origin") is None)
        connection.close()

        driver = browser()
        driver.get(f"http://127.0.0.1:{daemon.port}/")
        check("the service is listed", wait_for(lambda: service_cells(driver, name)[1] == "stopped", 10), "")
        check("a service without a front door shows no connections", service_cells(driver, name)[4] == "—", str(service_cells(driver, name)))
        check("the capacity group is shown, nothing in use",
              wait_for(lambda: group_cells(driver, "ui-gpu")[:5] == ["ui-gpu", "0", "4", "—", "—"], 10), str(group_cells(driver, "ui-gpu")))
        # Without a token: services, but not the audit log; the page says why and polls.
        check("without a token the page says the audit log needs one",
              wait_for(lambda: "audit log and service output need a token" in driver.find_element(By.ID, "message").text, 10),
              str(wait_for(lambda: driver.find_element(By.ID, "message").text, 0)))
        check("no audit rows without a token", not driver.find_elements(By.CSS_SELECTOR, "#events tbody tr"))
        check("polling without a token", wait_for(lambda: driver.find_element(By.ID, "live").text == "polling", 10))
        read_token = open(os.path.join(daemon.state, "read-token")).read().strip()
        driver.find_element(By.ID, "token").send_keys(read_token)
        driver.find_element(By.ID, "use-token").click()
        check("live updates on with the read token", wait_for(lambda: driver.find_element(By.ID, "live").text == "live", 10))
        check("no actions without the admin token", not driver.find_element(By.ID, "service-actions").is_displayed())

        # A lease taken elsewhere shows on the page within 1 s, with no reload.
        marker = driver.execute_script("window.notReloaded = true; return window.notReloaded")
        status, lease = daemon.call("POST", f"/v1/services/{name}/leases", {"ttl_ms": 600000, "holder": "from-curl"})
        check("lease acquired", status == 201, str(lease))
        shown = wait_for(lambda: service_cells(driver, name)[2] == "1" and service_cells(driver, name)[1] == "ready", 1.0)
        check("the new count shows within 1 s", shown, str(wait_for(lambda: service_cells(driver, name), 0)))
        check("no reload", marker and driver.execute_script("return window.notReloaded === true"))
        check("the group shows the service's cost in use",
              wait_for(lambda: group_cells(driver, "ui-gpu")[:4] == ["ui-gpu", "3", "4", name], 5), str(group_cells(driver, "ui-gpu")))

        status, _ = daemon.call("DELETE", f"/v1/leases/{lease['id']}")
        check("lease released", status == 200)
        check("release shows stopped", wait_for(lambda: service_cells(driver, name)[1:3] == ["stopped", "0"], 5),
              str(wait_for(lambda: service_cells(driver, name), 0)))

        # The audit filter: lease.* only, kept in the URL.
        Select(driver.find_element(By.ID, "filter-kind")).select_by_value("lease.*")
        def only_leases():
            kinds = [row.get_attribute("data-kind") for row in driver.find_elements(By.CSS_SELECTOR, "#events tbody tr")]
            return kinds if len(kinds) >= 2 and all(kind.startswith("lease.") for kind in kinds) else None
        check("lease.* shows only lease events", wait_for(only_leases, 5), "")
        check("the filter is in the URL", "kind=lease.*" in driver.current_url.replace("%2A", "*"), driver.current_url)
        # The user filter: events this test's user caused (it took the lease over the socket).
        import pwd
        me = pwd.getpwuid(os.getuid()).pw_name
        user_box = driver.find_element(By.ID, "filter-user")
        user_box.send_keys(me + "\n")
        def only_mine():
            actors = [row.find_elements(By.TAG_NAME, "td")[6].text for row in driver.find_elements(By.CSS_SELECTOR, "#events tbody tr")]
            return actors if actors and all(actor == f"{me} (uid {os.getuid()})" for actor in actors) else None
        check("the user filter shows only that user's events", wait_for(only_mine, 5), "")
        check("the user filter is in the URL", f"user={me}" in driver.current_url, driver.current_url)
        user_box.clear()
        user_box.send_keys("\n")

        # The admin token shows the actions; Restart and Release from the page act.
        driver.find_element(By.ID, "token").send_keys(daemon.token)
        driver.find_element(By.ID, "use-token").click()
        check("admin role", wait_for(lambda: driver.find_element(By.ID, "role").text == "admin", 5))
        check("token kept in sessionStorage, not in the URL",
              driver.execute_script("return sessionStorage.getItem('procrefd.token')") == daemon.token and daemon.token not in driver.current_url)
        status, lease = daemon.call("POST", f"/v1/services/{name}/leases", {"ttl_ms": 600000, "holder": "for-restart"})
        check("second lease", status == 201, str(lease))
        pid_before = daemon.call("GET", f"/v1/services/{name}")[1]["pid"]
        def open_detail():
            driver.find_element(By.CSS_SELECTOR, f'#services tr[data-service="{name}"]').click()
            return True
        check("service row clicked", wait_for(open_detail, 5))
        check("detail shows the lease", wait_for(lambda: "for-restart" in driver.find_element(By.ID, "leases").text, 5))
        check("detail shows the lease's owner", f"(uid {os.getuid()})" in driver.find_element(By.ID, "leases").text,
              driver.find_element(By.ID, "leases").text)
        check("actions shown", wait_for(lambda: driver.find_element(By.ID, "restart").is_displayed(), 5))
        check("Restart clicked", wait_for(lambda: driver.find_element(By.ID, "restart").click() or True, 5))
        def restarted():
            _, events = daemon.call("GET", f"/v1/events?service={name}&kind=service.starting&order=desc&limit=1")
            _, service = daemon.call("GET", f"/v1/services/{name}")
            started = events["events"] and events["events"][0]["detail"].get("reason") == "admin_restart"
            return started and service["state"] == "ready" and service["pid"] not in (None, pid_before)
        check("Restart from the page restarts the service", wait_for(restarted, 15))
        check("the page shows it ready again", wait_for(lambda: service_cells(driver, name)[1] == "ready", 5))
        check("timeline drawn", wait_for(lambda: driver.find_element(By.CSS_SELECTOR, "#timeline path").get_attribute("d").count("V") >= 2, 5))
        os.makedirs(args.artifacts, exist_ok=True)
        shot = os.path.join(args.artifacts, "dashboard.png")
        driver.save_screenshot(shot)
        check("screenshot saved", os.path.getsize(shot) > 10_000, shot)

        def click_release():  # the table is re-rendered as events come: retry a stale button
            driver.find_element(By.CSS_SELECTOR, "#leases button.release").click()
            return True
        check("Release button clicked", wait_for(click_release, 5))
        check("Release from the page ends the lease", wait_for(lambda: daemon.call("GET", f"/v1/leases?service={name}")[1]["leases"] == [], 10))
        check("and the page shows stopped", wait_for(lambda: service_cells(driver, name)[1] == "stopped", 10))

        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        check("no console errors", not errors, str(errors))
    finally:
        if driver:
            driver.quit()
        daemon.stop()


def run_reads_need_token(args, check):
    """With tcp_reads_need_token, the page itself loads, asks for a token, and works with the
    read token: services listed, no actions."""
    daemon = Daemon(args.bin, "[security]\ntcp_reads_need_token = true\n")
    driver = None
    try:
        name = "ui-" + uuid.uuid4().hex[:8]
        status, _ = daemon.call("PUT", f"/v1/services/{name}", {"start": ["sleep", "600"]})
        check("service defined (reads need a token)", status == 201, str(status))
        read_token = open(os.path.join(daemon.state, "read-token")).read().strip()
        driver = browser()
        driver.get(f"http://127.0.0.1:{daemon.port}/")
        check("without a token the page says it needs one",
              wait_for(lambda: "needs a token" in driver.find_element(By.ID, "message").text, 10),
              str(wait_for(lambda: driver.find_element(By.ID, "message").text, 0)))
        check("nothing listed without a token", not driver.find_elements(By.CSS_SELECTOR, "#services tbody tr"))
        driver.find_element(By.ID, "token").send_keys(read_token)
        driver.find_element(By.ID, "use-token").click()
        check("with the read token the services are listed", wait_for(lambda: service_cells(driver, name)[1] == "stopped", 10))
        check("read-only role", wait_for(lambda: driver.find_element(By.ID, "role").text == "read-only token", 5))
        check("the message is gone", wait_for(lambda: not driver.find_element(By.ID, "message").is_displayed(), 5))
        check("no actions with the read token", not driver.find_element(By.ID, "service-actions").is_displayed())
    finally:
        if driver:
            driver.quit()
        daemon.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--artifacts", required=True)
    args = parser.parse_args()
    check = Check()
    try:
        run(args, check)
        run_reads_need_token(args, check)
    except Exception:
        traceback.print_exc()
        check.failed.append("exception")
    print(f"ui: {check.passed} passed, {len(check.failed)} failed")
    sys.exit(1 if check.failed else 0)


if __name__ == "__main__":
    main()
