#!/usr/bin/env python3
"""Lease cycles of two procrefd builds, A and B, in one sitting: rounds alternate A, B, A, B…
so the box's drift hits both alike. Each round is a fresh daemon per build (durability
normal), the `ready` service with an anchor lease held, then bench/loadgen.c at CLIENTS for
SECONDS. Prints, per build, the median cycles/s and procrefd CPU µs per cycle (utime+stime
over the run / cycles), and B against A. Numbers are printed, never asserted.

Usage: ab_cycles.py --a BIN_DIR --b BIN_DIR [--clients 8] [--seconds 5] [--rounds 3]
"""
import argparse, asyncio, os, statistics, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: the daemon driver and the load generator)


async def one_round(binary, clients, seconds):
    daemon = run.Procrefd(binary, "normal")
    try:
        results = await run.bench_procrefd_cycles(daemon, [clients], seconds)
        cycles_per_s, _p50, _p99, server_us, _machine_us = results[clients]
        return cycles_per_s, server_us
    finally:
        daemon.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", required=True)
    parser.add_argument("--b", required=True)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    run.build_loadgen()
    figures = {"A": [], "B": []}
    for _ in range(args.rounds):
        for name, binary in (("A", args.a), ("B", args.b)):
            figures[name].append(asyncio.run(one_round(binary, args.clients, args.seconds)))
    medians = {}
    for name in ("A", "B"):
        rates = [r for r, _ in figures[name]]
        cpus = [c for _, c in figures[name]]
        medians[name] = (statistics.median(rates), statistics.median(cpus))
        print(f"{name}: cycles/s {' '.join(f'{r:,.0f}' for r in rates)} (median {medians[name][0]:,.0f}); "
              f"procrefd CPU µs/cycle {' '.join(f'{c:.0f}' for c in cpus)} (median {medians[name][1]:.0f})")
    (rate_a, cpu_a), (rate_b, cpu_b) = medians["A"], medians["B"]
    print(f"B/A at {args.clients} clients: cycles/s {rate_b / rate_a - 1:+.1%}, procrefd CPU per cycle {cpu_b / cpu_a - 1:+.1%}")


if __name__ == "__main__":
    main()
