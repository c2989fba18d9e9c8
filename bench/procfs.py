"""What the bench and soak scripts read from /proc: live processes, holders on a set."""
import os


def state(pid):
    """The one-letter state of `pid` (R, S, Z, ...), or None when it does not exist."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def alive(pid):
    """True while `pid` exists and is neither a zombie nor dead."""
    return state(pid) not in (None, "Z", "X")


def cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return b""


def pids():
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def holders_on(semid):
    """Live procref-holder processes holding a lease on the set `semid`."""
    found = []
    for pid in pids():
        argv = cmdline(pid).split(b"\0")
        if len(argv) >= 2 and argv[0].endswith(b"procref-holder") and argv[1] == str(semid).encode() and alive(pid):
            found.append(pid)
    return found


def pids_mentioning(marker):
    """Live processes (but this one) whose command line contains `marker`."""
    return [pid for pid in pids() if pid != os.getpid() and marker.encode() in cmdline(pid) and alive(pid)]
