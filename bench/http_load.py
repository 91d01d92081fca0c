#!/usr/bin/python3
"""Checks that examples/fast_gitlab is never the bottleneck: POSTs a fixed
body over keep-alive connections from several processes for a fixed time
and prints requests/s. Stdlib only; bench/run calls it, or by hand:

    bench/http_load.py PORT [--seconds 3] [--procs 2] [--size 4096]
"""
import argparse
import multiprocessing
import socket
import time

RESPONSE_END = b'{"success":true}'


def worker(port, seconds, size, out):
    body = b"x" * size
    req = (b"POST /api/v4/internal/mail_room/incoming_email HTTP/1.1\r\n"
           b"Host: 127.0.0.1\r\nContent-Type: text/plain\r\n"
           b"Gitlab-Mailroom-Api-Request: x\r\n"
           b"Content-Length: " + str(size).encode() + b"\r\n\r\n" + body)
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    n = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        s.sendall(req)
        got = b""
        while not got.endswith(RESPONSE_END):
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit("server closed the connection")
            got += chunk
        n += 1
    s.close()
    out.put(n)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--size", type=int, default=4096)
    a = p.parse_args()
    q = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=worker, args=(a.port, a.seconds, a.size, q))
             for _ in range(a.procs)]
    start = time.monotonic()
    for pr in procs:
        pr.start()
    total = sum(q.get(timeout=a.seconds + 30) for _ in procs)
    for pr in procs:
        pr.join(timeout=10)
    elapsed = time.monotonic() - start
    print(f"{total / elapsed:.0f}")


if __name__ == "__main__":
    main()
