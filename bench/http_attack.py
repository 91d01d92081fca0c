#!/usr/bin/python3
"""Probe latency of serve's [http] listener under attack (issue 18 item 5):
1,000 idle connections and 8 clients trickling a request head one byte a
second, both kept up (a connection the server cuts off is opened again),
while probes GET /livez and /readyz one after the other. Prints the time
from connect to status line: p50, p99, max, and the share answered within
a kubelet's 1 s timeout; and serve's open descriptors after the probes
and its peak memory (VmHWM). Stdlib only; by hand:

    bench/http_attack.py [--bin target/release/gitlab-mailgate] [--probes 100]

It starts its own serve (LMTP and HTTP on free loopback ports; GitLab is
a port nothing listens on, so /readyz answers 503 "cannot reach GitLab",
which is an answer all the same). The attackers run in another process so
they do not share the probing process's interpreter lock. A probe that
got no status line within --give-up seconds counts as unanswered.
"""
import argparse
import base64
import errno
import multiprocessing
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KUBELET_TIMEOUT = 1.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connect(port):
    """A non-blocking connect: a full accept queue must not stall the
    attacker (the old listener left its queue full)."""
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", port))
    return s


def alive(s):
    """Still open, or still connecting: not answered nor closed."""
    try:
        s.recv(64)
        return False  # an answer (408) or the close
    except BlockingIOError:
        return True
    except OSError as e:
        return e.errno == errno.ENOTCONN


def established(s):
    try:
        s.getpeername()
        return True
    except OSError:
        return False


def attack(port, idle, tricklers, at_strength, stop):
    """Keeps `idle` silent connections and `tricklers` trickling ones open
    until `stop` is set (or 10 minutes pass)."""
    raise_nofile(idle + 1024)
    end = time.monotonic() + 600
    head = b"GET /livez HTTP/1.1\r\nHost: attacker\r\nX-Slow: "
    slots = [None] * idle
    slow = [(None, 0)] * tricklers
    next_byte = time.monotonic()
    while not stop.is_set() and time.monotonic() < end:
        for i, s in enumerate(slots):
            if s is None or not alive(s):
                if s is not None:
                    s.close()
                slots[i] = connect(port)
        if all(established(s) for s in slots):
            at_strength.set()
        if time.monotonic() >= next_byte:
            next_byte += 1.0  # one byte a second each
            for i, (s, sent) in enumerate(slow):
                if s is None or not alive(s):
                    if s is not None:
                        s.close()
                    s, sent = connect(port), 0
                try:
                    s.send(head[sent:sent + 1] or b"a")
                    sent += 1
                except OSError:
                    pass  # still connecting
                slow[i] = (s, sent)
        time.sleep(0.1)


def probe(port, path, give_up):
    """Seconds from connect to status line, or None if none came."""
    start = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=give_up)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n".encode())
        got = b""
        while b"\r\n" not in got:
            left = give_up - (time.monotonic() - start)
            if left <= 0:
                return None
            s.settimeout(left)
            chunk = s.recv(512)
            if not chunk:
                return None
            got += chunk
        s.close()
        return time.monotonic() - start
    except OSError:
        return None


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default=os.path.join(ROOT, "target/release/gitlab-mailgate"))
    p.add_argument("--idle", type=int, default=1000)
    p.add_argument("--tricklers", type=int, default=8)
    p.add_argument("--probes", type=int, default=100)
    p.add_argument("--every", type=float, default=0.1, help="seconds between probes")
    p.add_argument("--give-up", type=float, default=5.0)
    p.add_argument("--label", default="")
    a = p.parse_args()

    raise_nofile(a.idle + 1024)
    work = tempfile.mkdtemp(prefix="gitlab-mailgate-http-attack-")
    secret = os.path.join(work, "secret")
    with open(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
        f.write(base64.b64encode(os.urandom(32)) + b"\n")
    http_port = free_port()
    cfg = os.path.join(work, "config.toml")
    with open(cfg, "w") as f:
        f.write(f"""[gitlab]
url = "http://127.0.0.1:{free_port()}"

[incoming_email]
address = "incoming+%{{key}}@incoming.example.com"
secret_file = "{secret}"

[lmtp]
listen = ["127.0.0.1:{free_port()}"]

[log]
target = "stderr"

[http]
listen = "127.0.0.1:{http_port}"
""")
    log = open(os.path.join(work, "serve.log"), "wb")
    serve = subprocess.Popen([a.bin, "serve", "--config", cfg], stdout=log, stderr=log)
    stop = multiprocessing.Event()
    attacker = None
    try:
        deadline = time.monotonic() + 30
        while probe(http_port, "/livez", 1) is None:
            if serve.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"serve did not answer /livez; see {work}/serve.log")
            time.sleep(0.1)
        at_strength = multiprocessing.Event()
        attacker = multiprocessing.Process(
            target=attack, args=(http_port, a.idle, a.tricklers, at_strength, stop))
        attacker.start()
        full = at_strength.wait(30)
        times = []
        for i in range(a.probes):
            times.append(probe(http_port, ("/livez", "/readyz")[i % 2], a.give_up))
            time.sleep(a.every)
        fds = len(os.listdir(f"/proc/{serve.pid}/fd"))
        with open(f"/proc/{serve.pid}/status") as f:
            hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
        answered = [t for t in times if t is not None]
        within = sum(1 for t in answered if t <= KUBELET_TIMEOUT)
        ms = lambda t: f"{t * 1000:.1f} ms"
        if answered:
            # Unanswered probes count as slower than any answered one.
            ranked = answered + [float("inf")] * (len(times) - len(answered))
            p50, p99, mx = (percentile(ranked, 50), percentile(ranked, 99), max(ranked))
            show = lambda t: ms(t) if t != float("inf") else f"> {a.give_up:g} s"
            figures = f"p50 {show(p50)}, p99 {show(p99)}, max {show(mx)}"
        else:
            figures = f"none answered within {a.give_up:g} s"
        label = f"{a.label}: " if a.label else ""
        print(f"{label}{a.probes} probes under {a.idle} idle + {a.tricklers} trickling "
              f"connections (all open at once: {'yes' if full else 'no'}): {figures}; "
              f"answered within 1 s: {100 * within / len(times):.0f} % "
              f"({within}/{len(times)}); serve then had {fds} descriptors open, "
              f"VmHWM {hwm / 1024:.1f} MiB")
    finally:
        stop.set()
        if attacker is not None:
            attacker.join(15)
            if attacker.is_alive():
                attacker.kill()
        serve.terminate()
        try:
            serve.wait(10)
        except subprocess.TimeoutExpired:
            serve.kill()
        log.close()


if __name__ == "__main__":
    main()
