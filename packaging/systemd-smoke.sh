#!/bin/sh
# Runs the installed package's systemd units under a real systemd, in a
# throwaway container (packaging/smoke-lib.sh): starts the units there and
# talks LMTP to them as the user postfix, with the GitLab stand-in of
# tests/support behind them, then runs setup on a Postfix instance of its
# own. Nothing on the host changes. Prints "CHECK ok: ..." / "CHECK FAIL:
# ..." lines and exits 0 only when every check passed.
#
# Needs root, systemd-nspawn, the package installed, the postfix user and
# Debian's /usr/bin/python3 with python3-jwt. Used by tests/suite/package.rs.
set -eu

. "$(dirname "$0")/smoke-lib.sh"
smoke_setup
# The packaged defaults: on a shared network, they must be free here.
[ -n "$network" ] || ports_free 2424 2425 9725
second_port=$(free_port)

# The container's /etc/gitlab-mailgate: the installed one, writable.
mkdir "$work/etc"
cp -a /etc/gitlab-mailgate/. "$work/etc/"
chown root:gitlab-mailgate "$work/etc"
chmod 0750 "$work/etc"

cat >"$work/lmtp.py" <<'EOF'
# One LMTP transaction: an unknown and a GitLab recipient, one message.
import smtplib, sys
addr = sys.argv[1]
c = smtplib.LMTP(addr) if addr.startswith("/") else smtplib.LMTP("127.0.0.1", int(addr))
assert c.docmd("LHLO", "smoke")[0] == 250
assert c.docmd("MAIL FROM:<alice@example.org>")[0] == 250
assert c.docmd("RCPT TO:<nobody@incoming.example.com>")[0] == 550
assert c.docmd("RCPT TO:<incoming+59d8df8370b7e95c5a49fbf86aeb2c93@incoming.example.com>")[0] == 250
assert c.docmd("DATA")[0] == 354
c.send(b"Subject: smoke\r\nMessage-ID: <smoke@example.org>\r\n\r\nbody\r\n.\r\n")
reply = c.getreply()
assert reply[0] == 250, reply
c.quit()
EOF
# GitLab's gitlab.yml in Omnibus layout for `gitlab-mailgate setup`.
mkdir -p "$work/gl/gitlab-rails/etc"
cp "$repo/tests/data/gitlab.yml" "$work/gl/gitlab-rails/etc/gitlab.yml"
cat >>"$work/inner.sh" <<EOF
SECOND_PORT=$second_port
EOF
cat >>"$work/inner.sh" <<'EOF'
C=/etc/gitlab-mailgate
head -c 32 /dev/urandom | base64 >$C/incoming_email_secret
chgrp gitlab-mailgate $C/incoming_email_secret
chmod 0640 $C/incoming_email_secret
mkdir -p $W/standin
# GitLab's service_desk_email secret below is a copy of the same: setup's
# check proves GitLab accepts the token of each mailbox.
/usr/bin/python3 $STANDIN --secret incoming_email=$C/incoming_email_secret \
    --secret service_desk_email=$C/incoming_email_secret \
    --out $W/standin --port 0 --lifetime 240 >$W/out/standin 2>&1 &
for i in $(seq 50); do grep -q PORT $W/out/standin && break; sleep 0.1; done
GITLAB_PORT=$(awk '/^PORT/ {print $2}' $W/out/standin)
sed -i "s#^url = .*#url = \"http://127.0.0.1:$GITLAB_PORT\"#" $C/config.toml
for i in second third; do cp -p $C/config.toml $C/$i.toml; done
sed -i "s/^#listen = .*/listen = [\"127.0.0.1:$SECOND_PORT\"]/" $C/second.toml
sed -i -e 's%^#listen = .*%listen = ["unix:/run/gitlab-mailgate/third/server/lmtp.sock"]%' \
    -e 's/^#socket_mode = .*/socket_mode = "0666"/' $C/third.toml
# One HTTP listener and one recipient lookup per port: the other
# instances go without.
sed -i -e 's/^listen = "127.0.0.1:9725"/#&/' -e 's/^listen = "127.0.0.1:2425"/#&/' \
    $C/second.toml $C/third.toml
AS_POSTFIX="setpriv --reuid=postfix --regid=postfix --init-groups /usr/bin/python3 $W/lmtp.py"

check "units start" "systemctl start gitlab-mailgate.socket gitlab-mailgate@second.socket gitlab-mailgate@third.service"
check "postfix delivers over gitlab-mailgate.socket" "$AS_POSTFIX /run/gitlab-mailgate/lmtp.sock"
check "the socket-activated server runs" "systemctl is-active gitlab-mailgate.service"
check "/livez of the socket-activated server answers 200" "/usr/bin/python3 $W/probe.py /livez 200"
check "/readyz answers 200 with GitLab up" "/usr/bin/python3 $W/probe.py /readyz 200"
check "postfix delivers over gitlab-mailgate@second.socket" "$AS_POSTFIX /run/gitlab-mailgate/second/lmtp.sock"
check "postfix delivers over the socket again, the servers running" "$AS_POSTFIX /run/gitlab-mailgate/lmtp.sock"
check "the server binds its own socket in its RuntimeDirectory" "$AS_POSTFIX /run/gitlab-mailgate/third/server/lmtp.sock"
check "the sockets stay root:postfix" \
    '[ "$(stat -c %U:%G /run/gitlab-mailgate/lmtp.sock /run/gitlab-mailgate/second/lmtp.sock | sort -u)" = root:postfix ]'
check "the servers stop on SIGTERM" "systemctl stop gitlab-mailgate.service gitlab-mailgate@second.service gitlab-mailgate@third.service"
check "the socket outlives its server" "[ -S /run/gitlab-mailgate/lmtp.sock ]"
check "the socket starts the server again" "$AS_POSTFIX /run/gitlab-mailgate/lmtp.sock"
check "the server alone starts" "systemctl stop gitlab-mailgate.socket gitlab-mailgate.service && systemctl start gitlab-mailgate.service"
check "delivery over TCP 127.0.0.1:2424" "/usr/bin/python3 $W/lmtp.py 2424"
check "GitLab got every message" '[ "$(ls $W/standin/*.eml | wc -l)" = 6 ]'
check "a missing configuration fails the unit" "! systemctl start gitlab-mailgate@missing.service"

# setup on the installed package: from GitLab's gitlab.yml (Omnibus layout)
# and an unconfigured Postfix instance of its own (-c DIR) to a checked
# route over gitlab-mailgate.socket; then again (nothing changes), and a
# dry run that leaves Postfix's configuration directory as it was.
GL=$W/gl/gitlab-rails/etc
sed -i -e "s#@GITLAB_URL@#http://127.0.0.1:$GITLAB_PORT#" -e 's#@DOMAIN@#incoming.example.com#' $GL/gitlab.yml
for m in incoming_email service_desk_email; do cp $C/incoming_email_secret $GL/gitlab_${m}_secret; done
chgrp gitlab-mailgate $GL/gitlab.yml $GL/gitlab_*_secret
chmod 0640 $GL/gitlab.yml $GL/gitlab_*_secret
mkdir -p $W/pf $W/pfq
cp /etc/postfix/master.cf.proto $W/pf/master.cf
: >$W/pf/main.cf
postconf -c $W/pf -e compatibility_level=3.6 queue_directory=$W/pfq data_directory=$W/pfd mydestination=
SETUP="gitlab-mailgate setup --gitlab-config $GL/gitlab.yml --config $W/setup.toml --postfix-config $W/pf"
pf_hash() { find $W/pf -type f | sort | xargs cat | sha256sum; }
PF_BEFORE_SETUP=$(pf_hash)
check "setup configures, routes Postfix, starts the socket, and its check passes" \
    "systemctl stop gitlab-mailgate.service && $SETUP && systemctl is-active gitlab-mailgate.socket"
check "a second setup changes nothing" "$SETUP | grep -x 'setup: nothing changed'"
check "setup --dry-run changes nothing" \
    'before=$(pf_hash); rm $W/setup.toml && $SETUP --dry-run | grep -q "^would" && [ "$(pf_hash)" = "$before" ] && [ ! -e $W/setup.toml ]'
# A quiet host (as after a boot, no mail yet): gitlab-mailgate.socket
# holds the [http] port too, so a scrape starts the server.
check "with no mail, a scrape starts the server: /metrics and /readyz answer" \
    "systemctl stop gitlab-mailgate.service && systemctl is-active gitlab-mailgate.socket && ! systemctl is-active gitlab-mailgate.service && /usr/bin/python3 $W/probe.py /metrics 200 && /usr/bin/python3 $W/probe.py /readyz 200 && systemctl is-active gitlab-mailgate.service"
check "check fails on a secret GitLab does not share" \
    'head -c 32 /dev/urandom | base64 >$W/wrong_secret && chmod 0600 $W/wrong_secret && sed "s#^secret_file = .*#secret_file = \"$W/wrong_secret\"#" $C/config.toml >$W/wrong.toml && ! gitlab-mailgate check --config $W/wrong.toml >$W/wrong.out 2>&1 && cat $W/wrong.out && grep -q "GitLab refuses our token" $W/wrong.out'
check "setup --undo leaves Postfix's configuration as before setup" \
    '$SETUP --undo && [ "$(pf_hash)" = "$PF_BEFORE_SETUP" ] && ! systemctl is-enabled gitlab-mailgate.socket'
check "a second setup --undo changes nothing" "$SETUP --undo | grep -x 'setup --undo: nothing changed'"
systemctl stop 'gitlab-mailgate*'
journalctl --no-pager -o short-monotonic -u 'gitlab-mailgate*' >>$W/out/detail 2>&1
echo DONE
EOF

smoke_boot --bind="$work/etc:/etc/gitlab-mailgate"
smoke_finish
