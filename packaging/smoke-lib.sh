# Sourced by packaging/*-smoke.sh: a throwaway container booted by
# systemd-nspawn (package systemd-container) on a copy-on-write overlay of
# this machine's root, so nothing on the host changes. Its
# /etc/systemd/system is $work/system, where only smoke.service (which runs
# $work/inner.sh, then powers the container off) and what the caller adds
# are enabled: no syslog daemon, no database, journald only, as on a stock
# Debian 12 server. The overlay's upper layer lives until the script ends,
# so booting twice is a reboot.
#
# inner.sh prints "CHECK ok: ..." / "CHECK FAIL: ..." lines into
# $work/out/log and "DONE" at its very end; smoke_finish passes only when
# DONE is there and no check failed.
#
# Where the caller runs in a container without CAP_NET_ADMIN (as inside
# ../shared/tools/fresh-ci), a private network would have its loopback down
# and nothing could be reached: then the container shares this machine's
# network, which one "note:" line says; the ports the caller picks are free
# ones, but the packaged defaults must be free.

repo=$(cd "$(dirname "$0")/.." && pwd)

smoke_cleanup() {
    # SMOKE_KEEP=DIR keeps what the container wrote (logs, journal excerpts).
    if [ -n "${SMOKE_KEEP:-}" ]; then
        mkdir -p "$SMOKE_KEEP" && cp -r "$work/out/." "$SMOKE_KEEP/" || true
    fi
    umount "$work/root" 2>/dev/null || true
    umount "$work/cow" 2>/dev/null || true
    rm -rf "$work"
}

free_port() {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Fails unless each of the TCP ports "$@" is free on 127.0.0.1.
ports_free() {
    for port in "$@"; do
        if ! /usr/bin/python3 -c 'import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null; then
            echo "$(basename "$0"): port $port is taken on this machine's network" >&2
            exit 1
        fi
    done
}

# Sets $work and $network and mounts the overlay at $work/root.
smoke_setup() {
    work=$(mktemp -d /tmp/gitlab-mailgate-smoke.XXXXXX)
    trap smoke_cleanup EXIT INT TERM
    # The user postfix runs client scripts from here.
    chmod 0755 "$work"

    # CAP_NET_ADMIN is bit 12 of the effective capabilities.
    cap_eff=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
    network=--private-network
    if [ $(( 0x$cap_eff >> 12 & 1 )) -eq 0 ]; then
        echo "note: $(basename "$0" .sh) uses this machine's network: without CAP_NET_ADMIN here (a container inside a container) a private network's loopback stays down"
        network=
    fi

    mkdir -p "$work/cow" "$work/root" "$work/out" "$work/system/multi-user.target.wants"
    # The overlay's upper layer must not be on an overlay itself: a tmpfs.
    mount -t tmpfs tmpfs "$work/cow"
    mkdir "$work/cow/upper" "$work/cow/work"
    mount -t overlay overlay \
        -o "lowerdir=/,upperdir=$work/cow/upper,workdir=$work/cow/work" "$work/root"

    cat >"$work/system/smoke.service" <<EOF
[Unit]
Description=gitlab-mailgate smoke test
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/bin/sh $work/inner.sh
StandardOutput=append:$work/out/log
StandardError=append:$work/out/log
TimeoutStartSec=250
ExecStopPost=/bin/systemctl --no-block poweroff
EOF
    smoke_enable smoke.service

    cat >"$work/probe.py" <<'EOF'
# GET http://127.0.0.1:9725PATH (the packaged [http] listen) must answer STATUS.
import sys, time, urllib.error, urllib.request
path, want = sys.argv[1], int(sys.argv[2])
status = None
for attempt in range(50):
    try:
        status = urllib.request.urlopen("http://127.0.0.1:9725" + path, timeout=5).status
    except urllib.error.HTTPError as e:
        status = e.code
    except OSError:
        status = None
    if status == want:
        sys.exit(0)
    time.sleep(0.2)
sys.exit("%s answered %s, expected %s" % (path, status, want))
EOF
    # The container's /tmp is its own tmpfs, and the checkout may live
    # under /tmp: hand the stand-in over through the bound work directory.
    cp "$repo/tests/support/gitlab_standin.py" "$work/gitlab_standin.py"

    # The lines every inner.sh starts with.
    cat >"$work/inner.sh" <<EOF
W=$work
STANDIN=$work/gitlab_standin.py
check() { if eval "\$2" >>"\$W/out/detail" 2>&1; then echo "CHECK ok: \$1"; else echo "CHECK FAIL: \$1"; fi; }
EOF
}

# Enables a unit of $work/system (or, with a path, another) in the container.
smoke_enable() {
    ln -sf "${2:-../$1}" "$work/system/multi-user.target.wants/$1"
}

# Boots the container once, until inner.sh powers it off; "$@" are more
# systemd-nspawn options.
smoke_boot() {
    timeout 300 systemd-nspawn --quiet --directory="$work/root" --register=no \
        --link-journal=no --keep-unit $network --machine=gitlab-mailgate-smoke \
        --bind="$work" --bind="$work/system:/etc/systemd/system" "$@" --boot \
        >>"$work/out/console" 2>&1 || true
}

# Prints the checks; on a failure also the details and the console, and
# exits 1.
smoke_finish() {
    cat "$work/out/log" 2>/dev/null || true
    if ! grep -q '^DONE$' "$work/out/log" 2>/dev/null || grep -q '^CHECK FAIL' "$work/out/log"; then
        echo "--- details" >&2
        cat "$work/out/detail" >&2 2>/dev/null || true
        for f in "$work"/out/*; do
            case $f in */log|*/detail|*/console) ;; *) echo "--- $f" >&2; tail -n 40 "$f" >&2 ;; esac
        done
        echo "--- console" >&2
        tail -n 40 "$work/out/console" >&2
        exit 1
    fi
}
