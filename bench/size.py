#!/usr/bin/env python3
"""Size and start-up of the installed binaries: bytes on disk as built and stripped (as
`make install` and the package ship them), and procrefd's start-up (`--version`, and `serve`
to its ready line on a new state dir: wall time, CPU and RSS, medians). With --compare, a
second build is measured in the same sitting, runs interleaved.

    python3 bench/size.py --bin .build/release [--compare OTHER_BIN_DIR] [--rounds 15]
"""
import argparse, json, os, shutil, signal, statistics, subprocess, tempfile, time

BINARIES = ["procrefd", "procref-door", "procref-logpump", "procref-holder"]
TICK = os.sysconf("SC_CLK_TCK")

def stripped_bytes(path):
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "stripped")
        subprocess.run(["strip", "-o", out, path], check=True)
        return os.path.getsize(out)

def version_run(binary):
    start = time.perf_counter()
    proc = subprocess.Popen([f"{binary}/procrefd", "--version"], stdout=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime

def serve_run(binary):
    """Seconds to the ready line, CPU seconds and RSS (KiB) then; stops it with SIGTERM."""
    state = tempfile.mkdtemp(prefix="prsize-", dir="/tmp")
    os.chmod(state, 0o700)
    try:
        start = time.perf_counter()
        proc = subprocess.Popen([f"{binary}/procrefd", "serve", "--state-dir", state, "--port", "0", "--log-level", "error"],
                                stdout=subprocess.PIPE)
        try:
            json.loads(proc.stdout.readline())
            wall = time.perf_counter() - start
            fields = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / TICK
            rss = int([l for l in open(f"/proc/{proc.pid}/status") if l.startswith("VmRSS:")][0].split()[1])
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        return wall, cpu, rss
    finally:
        shutil.rmtree(state, ignore_errors=True)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--compare", help="a second build's bin dir, measured in the same sitting")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    builds = [args.bin] + ([args.compare] if args.compare else [])

    print("| binary | build | as built (MB) | stripped (MB) |")
    print("|---|---|---:|---:|")
    for name in BINARIES:
        for build in builds:
            path = os.path.join(build, name)
            if os.path.exists(path):
                print(f"| {name} | {build} | {os.path.getsize(path) / 1e6:.2f} | {stripped_bytes(path) / 1e6:.2f} |")

    runs = {build: {"version": [], "version_cpu": [], "serve": [], "serve_cpu": [], "rss": []} for build in builds}
    for _ in range(args.rounds):
        for build in builds:  # interleaved: the machine's noise falls on both alike
            wall, cpu = version_run(build)
            runs[build]["version"].append(wall)
            runs[build]["version_cpu"].append(cpu)
            wall, cpu, rss = serve_run(build)
            runs[build]["serve"].append(wall)
            runs[build]["serve_cpu"].append(cpu)
            runs[build]["rss"].append(rss)
    print()
    print(f"Start-up, medians of {args.rounds} runs:")
    print()
    print("| build | `--version` wall (ms) | its CPU (ms) | `serve` to ready (ms) | its CPU (ms) | RSS at ready (MB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for build in builds:
        r = runs[build]
        print(f"| {build} | {statistics.median(r['version']) * 1e3:.1f} | {statistics.median(r['version_cpu']) * 1e3:.1f} "
              f"| {statistics.median(r['serve']) * 1e3:.1f} | {statistics.median(r['serve_cpu']) * 1e3:.0f} "
              f"| {statistics.median(r['rss']) / 1024:.1f} |")

if __name__ == "__main__":
    main()
