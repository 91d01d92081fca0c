#!/usr/bin/python3
"""A stand-in for GitLab's internal mail_room API, for gitlab-mailgate's tests.

It answers POST /api/v4/internal/mail_room/<mailbox> the way GitLab does:
the mailbox must be incoming_email or service_desk_email; the
Gitlab-Mailroom-Api-Request header must hold a JWT issued by
"gitlab-mailroom", with an integer iat that is neither in the future nor
older than 300 s (verified with PyJWT, independently of the Rust code);
the body must be text/plain. Accepted: 200 {"success":true}.
As in GitLab's lib/gitlab/mail_room/authenticator.rb, the token's header
picks the check: without a "kid", HS256 with the raw 32 bytes the mailbox's
--secret file decodes to; with a "kid", ES256 with the --public-key (PEM)
whose kid matches, the kid being computed here with python3-cryptography
the way ruby-jwt's default KidAsKeyDigest does (hex SHA-256 of the DER
SEQUENCE of the point's x and y as INTEGERs). A mailbox without the right
kind of key answers 401.

--clock-offset SECS shifts the stand-in's "now" (for the iat checks and
the HTTP Date header) by SECS, e.g. -120 for a GitLab whose clock is two
minutes behind.

Failure modes, chosen with --mode and switchable at run time with
POST /_control/mode (body: the mode) and read with GET /_control/mode:
  ok          behave like GitLab
  500 502 401 404
              answer that status (after reading the request)
  400         answer 400 {"success":false,"message":"... too large ..."}
              (GitLab's own refusal, after it mailed the sender)
  proxy400    answer 400 with an HTML page, as nginx does for plain
              HTTP sent to its HTTPS port: not GitLab's answer
  hang        read the request and never answer, until the client closes
  reset       read part of the body, then close the socket with a RST
  slow:<ms>   answer like ok after a delay
  429 503     answer that status (GitLab's rate limit, a proxy's outage)
  retry:<status>:<secs>
              answer <status> with "Retry-After: <secs>"
  retry-far:<status>
              answer <status> with a Retry-After date in the year
              99999999999
A comma-separated list ("500,ok") is used one item per request; the last
item stays. A test uses that for "first try fails, the retry succeeds" and
for one recipient failing among several.

Records, in --out DIR:
  <seq>-<mailbox>.eml  each accepted body, byte for byte
  requests.jsonl       one JSON object per API request, accepted or not:
                       seq, mailbox, status, jwt_ok, delivered_to (the body's
                       first line), length, nonce, content_type, alg and kid
                       (from the token's header, verified or not), and
                       in_flight: requests being handled when this one
                       came in, itself included (its maximum over the
                       file is the concurrency high-water mark)
--reply-smtp HOST:PORT makes it an auto-responder: after accepting a body
it sends a new message over SMTP to HOST:PORT, from the body's From address
to its Delivered-To address, with the same To (at most --reply-limit).
Prints "PORT <n>" on stdout once listening. Never prints secrets or tokens.
With --control-stdin, standard input is a control channel too: a line
"mode <MODE>" switches the mode and is answered "MODE <MODE>" (or
"ERROR <why>") on stdout, which works for an https stand-in as well; the end
of standard input (the test that started it has gone) stops the server.
Run with Debian's /usr/bin/python3 (python3-jwt, python3-cryptography). Exits on SIGTERM, at the
end of a control stdin, or after --lifetime seconds.
"""

import argparse
import base64
import binascii
import json
import os
import select
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import hashlib

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

API_PREFIX = "/api/v4/internal/mail_room/"
MAILBOXES = ("incoming_email", "service_desk_email")
AUTH_HEADER = "Gitlab-Mailroom-Api-Request"
ISSUER = "gitlab-mailroom"
MAX_AGE_SECS = 300
HANG_LIMIT_SECS = 600
MAX_BODY = 64 * 1024 * 1024
SIMPLE_MODES = ("ok", "500", "502", "503", "429", "401", "404", "400", "proxy400", "hang", "reset")


class State:
    """What all handler threads share: secrets, output dir, modes, counter."""

    def __init__(self, secrets, out_dir, mode, public_keys=None, clock_offset=0.0):
        self.secrets = secrets
        # mailbox -> {kid: public key}
        self.public_keys = public_keys or {}
        self.clock_offset = clock_offset
        self.out_dir = out_dir
        self.lock = threading.Lock()
        self.seq = 0
        self.modes = parse_mode(mode)
        self.stopping = threading.Event()
        self.in_flight = 0
        self.reply_smtp = None
        self.replies_left = 0

    def enter(self):
        with self.lock:
            self.in_flight += 1
            return self.in_flight

    def leave(self):
        with self.lock:
            self.in_flight -= 1

    def take_reply(self):
        """Whether an auto-reply may still be sent (and counts it)."""
        with self.lock:
            if self.reply_smtp is None or self.replies_left <= 0:
                return False
            self.replies_left -= 1
            return True

    def next_request(self):
        """A new sequence number and the mode that applies to this request."""
        with self.lock:
            self.seq += 1
            mode = self.modes[0]
            if len(self.modes) > 1:
                self.modes.pop(0)
            return self.seq, mode

    def set_mode(self, text):
        modes = parse_mode(text)
        with self.lock:
            self.modes = modes

    def mode_text(self):
        with self.lock:
            return ",".join(self.modes)

    def record(self, entry, body=None):
        with self.lock:
            if body is not None:
                name = "%d-%s.eml" % (entry["seq"], entry["mailbox"])
                with open(os.path.join(self.out_dir, name), "wb") as f:
                    f.write(body)
            with open(os.path.join(self.out_dir, "requests.jsonl"), "a") as f:
                f.write(json.dumps(entry, sort_keys=True) + "\n")


def parse_mode(text):
    """Checks a mode (or comma-separated list of modes); ValueError if bad."""
    modes = [m.strip() for m in text.strip().split(",")]
    for m in modes:
        if m in SIMPLE_MODES:
            continue
        if m.startswith("slow:") and m[5:].isdigit():
            continue
        parts = m.split(":")
        if len(parts) == 3 and parts[0] == "retry" and parts[1].isdigit() and parts[2].isdigit():
            continue
        if len(parts) == 2 and parts[0] == "retry-far" and parts[1].isdigit():
            continue
        raise ValueError("unknown mode %r" % m)
    return modes


def load_secret(path):
    """The raw key: GitLab's rules (one line ending, strict base64, 32 bytes)."""
    with open(path, "rb") as f:
        text = f.read()
    for end in (b"\r\n", b"\n", b"\r"):
        if text.endswith(end):
            text = text[: -len(end)]
            break
    key = base64.b64decode(text, validate=True)
    if len(key) != 32:
        raise ValueError("secret %s: %d bytes, not 32" % (path, len(key)))
    return key


def key_digest(public_key):
    """ruby-jwt's default kid for an EC key (JWT::JWK::EC#key_digest)."""
    numbers = public_key.public_numbers()
    # encode_dss_signature writes exactly DER SEQUENCE { INTEGER, INTEGER }.
    return hashlib.sha256(encode_dss_signature(numbers.x, numbers.y)).hexdigest()


def load_public_key(path):
    """A PEM public key on P-256, and its kid."""
    with open(path, "rb") as f:
        key = serialization.load_pem_public_key(f.read())
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("public key %s: not EC P-256" % path)
    return key_digest(key), key


def verify_token(token, secret, public_keys, now):
    """The token's claims if GitLab would accept it, else None."""
    if not token:
        return None
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        if kid is None:
            key, algorithm = secret, "HS256"
        else:
            key, algorithm = public_keys.get(kid), "ES256"
        if key is None:
            return None
        claims = jwt.decode(
            token,
            key=key,
            algorithms=[algorithm],
            issuer=ISSUER,
            # iat is checked below against the (shifted) clock.
            options={"require": ["iat", "iss"], "verify_iat": False},
        )
    except jwt.PyJWTError:
        return None
    iat = claims.get("iat")
    # GitLab allows no leeway for a token from the future.
    if not isinstance(iat, int) or iat > now or now - iat > MAX_AGE_SECS:
        return None
    return claims


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gitlab-standin"

    def date_time_string(self, timestamp=None):
        # The Date header shows the stand-in's (possibly shifted) clock.
        if timestamp is None:
            timestamp = time.time() + self.server.state.clock_offset
        return super().date_time_string(timestamp)

    def log_message(self, fmt, *args):
        # Request lines only (no headers, so never a token).
        sys.stderr.write("standin: %s\n" % (fmt % args))

    # --- request bodies -------------------------------------------------

    def read_body(self, limit=None):
        """The request body (Content-Length or chunked); at most `limit` bytes
        when given, leaving the rest unread."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self.read_chunked(limit)
        length = int(self.headers.get("Content-Length") or 0)
        length = min(length, MAX_BODY)
        if limit is not None:
            length = min(length, limit)
        return self.rfile.read(length)

    def read_chunked(self, limit):
        body = b""
        while len(body) < MAX_BODY:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                break
            body += self.rfile.read(size)
            self.rfile.readline()
            if limit is not None and len(body) >= limit:
                return body[:limit]
        return body

    # --- answers --------------------------------------------------------

    def answer(self, status, payload, retry_after=None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def answer_text(self, status, text):
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def reset(self):
        """Closes the connection with a TCP RST (SO_LINGER on, timeout 0)."""
        self.connection.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        self.close_connection = True
        # The socket is only really closed once rfile (a makefile() of it)
        # is closed too; wfile writes to the socket directly.
        self.rfile.close()
        self.connection.close()

    def hang(self):
        """Never answers; returns once the client closes the connection, the
        server stops, or HANG_LIMIT_SECS pass."""
        self.close_connection = True
        deadline = time.monotonic() + HANG_LIMIT_SECS
        sock = self.connection
        while not self.server.state.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            readable, _, _ = select.select([sock], [], [], min(left, 0.5))
            if not readable:
                continue
            try:
                if not sock.recv(4096):
                    return
            except (OSError, ssl.SSLError):
                return

    # --- routes ---------------------------------------------------------

    def do_GET(self):
        if self.path == "/_control/mode":
            self.answer_text(200, self.server.state.mode_text())
        else:
            self.answer(404, {"message": "404 Not Found"})

    def do_POST(self):
        state = self.server.state
        if self.path == "/_control/mode":
            text = self.read_body().decode("utf-8", "replace")
            try:
                state.set_mode(text)
            except ValueError as e:
                self.answer_text(400, str(e))
                return
            self.answer_text(200, state.mode_text())
            return
        if not self.path.startswith(API_PREFIX):
            self.read_body()
            self.answer(404, {"message": "404 Not Found"})
            return
        self.mail_room(self.path[len(API_PREFIX):])

    def mail_room(self, mailbox):
        state = self.server.state
        in_flight = state.enter()
        try:
            self.mail_room_counted(mailbox, in_flight)
        finally:
            state.leave()

    def mail_room_counted(self, mailbox, in_flight):
        state = self.server.state
        seq, mode = state.next_request()
        entry = {
            "seq": seq,
            "mailbox": mailbox,
            "status": None,
            "jwt_ok": False,
            "delivered_to": None,
            "length": None,
            "nonce": None,
            "content_type": self.headers.get("Content-Type"),
            "alg": None,
            "kid": None,
            "in_flight": in_flight,
        }
        try:
            header = jwt.get_unverified_header(self.headers.get(AUTH_HEADER) or "")
            entry.update(alg=header.get("alg"), kid=header.get("kid"))
        except jwt.PyJWTError:
            pass
        if mode == "reset":
            part = self.read_body(limit=16)
            entry.update(status="reset", length=len(part))
            state.record(entry)
            self.reset()
            return

        body = self.read_body()
        first_line = body.split(b"\n", 1)[0].rstrip(b"\r")
        entry.update(
            length=len(body), delivered_to=first_line.decode("utf-8", "replace")
        )
        claims = verify_token(
            self.headers.get(AUTH_HEADER),
            state.secrets.get(mailbox),
            state.public_keys.get(mailbox, {}),
            time.time() + state.clock_offset,
        )
        if claims is not None:
            entry.update(jwt_ok=True, nonce=claims.get("nonce"))

        if mode == "hang":
            entry["status"] = "hang"
            state.record(entry)
            self.hang()
            return
        if mode.startswith("slow:"):
            time.sleep(int(mode[5:]) / 1000.0)
            mode = "ok"
        retry_after = None
        if mode.startswith("retry:"):
            _, mode, retry_after = mode.split(":")
        if mode.startswith("retry-far:"):
            # An HTTP date whose year overflows any seconds count.
            _, mode = mode.split(":")
            retry_after = "Sun, 06 Nov 99999999999 08:49:37 GMT"

        if mode == "ok":
            if mailbox not in MAILBOXES or claims is None:
                status, payload = 401, {"message": "401 Unauthorized"}
            elif (entry["content_type"] or "").split(";")[0].strip() != "text/plain":
                status, payload = 415, {"message": "415 Unsupported Media Type"}
            else:
                status, payload = 200, {"success": True}
        elif mode == "400":
            status = 400
            payload = {
                "success": False,
                "message": "Request payload is too large for the job queue",
            }
        elif mode == "proxy400":
            entry["status"] = 400
            state.record(entry, None)
            self.answer_text(400, "<html><head><title>400 The plain HTTP request was sent to HTTPS port</title></head></html>\n")
            return
        else:
            status, payload = int(mode), {"message": "%s stand-in failure" % mode}

        entry["status"] = status
        state.record(entry, body if status == 200 else None)
        self.answer(status, payload, retry_after)
        if status == 200 and state.take_reply():
            threading.Thread(target=auto_reply, args=(state.reply_smtp, body), daemon=True).start()


def auto_reply(address, body):
    """Sends the auto-responder's "reply": from the message's From to its
    Delivered-To, same To, as a loop between two robots would."""
    import email
    import email.utils
    import smtplib

    msg = email.message_from_bytes(body)
    sender = email.utils.parseaddr(msg.get("From", ""))[1]
    rcpt = (msg.get("Delivered-To") or "").strip()
    host, _, port = address.rpartition(":")
    text = (
        "From: %s\r\nTo: %s\r\nSubject: Re: %s\r\nMessage-ID: <%s>\r\n\r\nauto-reply\r\n"
        % (msg.get("From", ""), msg.get("To", ""), msg.get("Subject", ""),
           email.utils.make_msgid(domain="standin.test")[1:-1])
    )
    try:
        with smtplib.SMTP(host, int(port), timeout=30) as smtp:
            smtp.sendmail(sender, [rcpt], text.encode())
    except (OSError, smtplib.SMTPException) as e:
        sys.stderr.write("standin: auto-reply failed: %s\n" % e)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # A client that goes away mid-request is normal in these tests.
        sys.stderr.write("standin: connection error: %s\n" % (sys.exc_info()[1],))


def control_stdin(state, stop):
    """Serves "mode <MODE>" lines from stdin; stops the server at its end."""
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "mode":
            try:
                state.set_mode(arg)
                reply = "MODE " + state.mode_text()
            except ValueError as e:
                reply = "ERROR %s" % e
        else:
            reply = "ERROR unknown command %r" % command
        sys.stdout.write(reply + "\n")
        sys.stdout.flush()
    stop()


def main():
    p = argparse.ArgumentParser(description="GitLab mail_room API stand-in")
    p.add_argument("--secret", action="append", default=[], metavar="MAILBOX=PATH")
    p.add_argument("--public-key", action="append", default=[], metavar="MAILBOX=PATH")
    p.add_argument("--clock-offset", type=float, default=0.0, metavar="SECS")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--mode", default="ok")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--lifetime", type=float, default=1800.0, metavar="SECS")
    p.add_argument("--control-stdin", action="store_true")
    p.add_argument("--reply-smtp", metavar="HOST:PORT")
    p.add_argument("--reply-limit", type=int, default=50)
    args = p.parse_args()

    secrets = {}
    for item in args.secret:
        name, sep, path = item.partition("=")
        if not sep or name not in MAILBOXES:
            p.error("--secret wants incoming_email=PATH or service_desk_email=PATH")
        try:
            secrets[name] = load_secret(path)
        except (OSError, ValueError, binascii.Error) as e:
            p.error("cannot use the secret file %s: %s" % (path, type(e).__name__))
    public_keys = {}
    for item in args.public_key:
        name, sep, path = item.partition("=")
        if not sep or name not in MAILBOXES:
            p.error("--public-key wants incoming_email=PATH or service_desk_email=PATH")
        try:
            kid, key = load_public_key(path)
        except (OSError, ValueError) as e:
            p.error("cannot use the public key %s: %s" % (path, e))
        public_keys.setdefault(name, {})[kid] = key
    os.makedirs(args.out, exist_ok=True)
    try:
        state = State(secrets, args.out, args.mode, public_keys, args.clock_offset)
    except ValueError as e:
        p.error(str(e))

    state.reply_smtp = args.reply_smtp
    state.replies_left = args.reply_limit
    server = Server(("127.0.0.1", args.port), Handler)
    server.state = state
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        # The handshake then happens in the handler thread, on first read,
        # so one stalled client cannot block accept().
        server.socket = ctx.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )

    def stop(*_):
        state.stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    timer = threading.Timer(args.lifetime, stop)
    timer.daemon = True
    timer.start()

    sys.stdout.write("PORT %d\n" % server.server_address[1])
    sys.stdout.flush()
    if args.control_stdin:
        threading.Thread(target=control_stdin, args=(state, stop), daemon=True).start()
    server.serve_forever(poll_interval=0.2)
    server.server_close()


if __name__ == "__main__":
    main()
