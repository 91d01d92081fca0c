#!/bin/sh
# The README's quick start, verbatim, on a stock Debian 12 mail host under
# a real systemd (journald only, no rsyslog), against the system Postfix:
#
#   apt install ./gitlab-mailgate_*.deb
#   gitlab-mailgate setup --postfix
#   gitlab-mailgate check --postfix --send-test
#
# then: smtpd refuses an unknown address with nothing queued and no
# non-delivery notice; a GitLab address is delivered; after a reboot with
# no mail, /metrics and /readyz answer; a rotated GitLab secret makes
# `check` fail; after a broken configuration, the README's way out of
# systemd's start limit works; `setup --undo` leaves Postfix's
# configuration hashing as before setup; after setup once more, `apt purge`
# undoes it too and removes the package.
#
# Before the quick start, the container is made what the README assumes:
# Postfix configured by Debian as an "Internet Site" and running, GitLab
# laid out like Omnibus (/var/opt/gitlab/gitlab-rails/etc, the user git's,
# mode 0700) with the GitLab stand-in of tests/support as its API, started
# at boot before the mail programs.
#
# Usage: quickstart-smoke.sh PACKAGE.deb, as root, with the package not
# installed on this machine (the container starts as a copy of it).
# Needs systemd-nspawn, Postfix installed, Debian's /usr/bin/python3 with
# python3-jwt. Run by tests/suite/package.rs.
set -eu

deb=$(realpath "$1")
. "$(dirname "$0")/smoke-lib.sh"
if dpkg-query -W -f='${db:Status-Abbrev}' gitlab-mailgate 2>/dev/null | grep -q '^i'; then
    echo "quickstart-smoke: gitlab-mailgate is installed here; purge it first (the container starts as a copy of this machine)" >&2
    exit 1
fi
smoke_setup
[ -n "$network" ] || ports_free 25 2425 9725
gitlab_port=$(free_port)

mkdir -p "$work/pkg" "$work/standin"
cp "$deb" "$work/pkg/"
# One SMTP transaction with the container's smtpd (127.0.0.1:25): RCPT
# must answer WANT; with 250, the message is sent.
cat >"$work/smtp.py" <<'EOF'
import smtplib, sys
rcpt, want = sys.argv[1], int(sys.argv[2])
c = smtplib.SMTP("127.0.0.1", 25, timeout=30)
c.ehlo("client.example.org")
assert c.docmd("MAIL FROM:<alice@example.org>")[0] == 250
reply = c.docmd("RCPT TO:<%s>" % rcpt)
print("RCPT TO:<%s>: %s %s" % (rcpt, reply[0], reply[1].decode()))
assert reply[0] == want, reply
if want == 250:
    assert c.docmd("DATA")[0] == 354
    c.send(b"From: <alice@example.org>\r\nTo: <%s>\r\nSubject: smoke\r\n"
           b"Message-ID: <quickstart@example.org>\r\n\r\nbody\r\n.\r\n" % rcpt.encode())
    reply = c.getreply()
    assert reply[0] == 250, reply
c.quit()
EOF

cat >"$work/wait_port.py" <<'EOF'
# Waits up to 10 s until 127.0.0.1:PORT accepts a connection.
import socket, sys, time
for attempt in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("nothing listens on port %s" % sys.argv[1])
EOF

# GitLab's API at boot, before Postfix and gitlab-mailgate (as on the
# GitLab host); ready once it listens.
GL=/var/opt/gitlab/gitlab-rails/etc
cat >"$work/system/gitlab-standin.service" <<EOF
[Unit]
Description=GitLab stand-in
Before=postfix.service gitlab-mailgate.service
[Service]
Type=exec
ExecStart=/usr/bin/python3 $work/gitlab_standin.py --port $gitlab_port --out $work/standin --lifetime 600 --secret incoming_email=$GL/gitlab_incoming_email_secret --secret service_desk_email=$GL/gitlab_service_desk_email_secret
StandardOutput=append:$work/out/standin
StandardError=append:$work/out/standin
ExecStartPost=/usr/bin/python3 $work/wait_port.py $gitlab_port
EOF
smoke_enable gitlab-standin.service
smoke_enable postfix.service /lib/systemd/system/postfix.service

cat >>"$work/inner.sh" <<EOF
GITLAB_PORT=$gitlab_port
GL=$GL
EOF
cat >>"$work/inner.sh" <<'EOF'
DOMAIN=incoming.example.com
SMTP="/usr/bin/python3 $W/smtp.py"
# Postfix's configuration: every file under /etc/postfix, with its hash.
pf_hash() { find /etc/postfix -type f -print0 | sort -z | xargs -0 sha256sum; }
secret() { head -c 32 /dev/urandom | base64 >"$1"; }
no_notice() {
    [ -z "$(postqueue -j)" ] && ! journalctl -q --no-pager -t postfix/bounce | grep 'sender non-delivery notification'
}
phase=$(cat $W/phase)
export DEBIAN_FRONTEND=noninteractive

if [ "$phase" = 1 ]; then
    # The host the README assumes (not part of the quick start). A
    # container image's policy-rc.d, which forbids starting services, is no
    # part of a Debian server.
    rm -f /usr/sbin/policy-rc.d
    check "Debian configures Postfix as an Internet Site, and it runs" '
        echo "postfix postfix/main_mailer_type select Internet Site" | debconf-set-selections &&
        echo "postfix postfix/mailname string mx.example.org" | debconf-set-selections &&
        dpkg-reconfigure -f noninteractive postfix && postconf -e myhostname=mx.example.org &&
        systemctl restart postfix && systemctl is-active postfix@-'
    check "GitLab is laid out like Omnibus (git's, 0700) and its API answers" '
        { getent passwd git || useradd --system --no-create-home --home-dir /var/opt/gitlab git; } &&
        mkdir -p $GL && cp $W/gitlab.yml $GL/ &&
        secret $GL/gitlab_incoming_email_secret && secret $GL/gitlab_service_desk_email_secret &&
        chown -R git:git /var/opt/gitlab && chmod 0700 $GL && chmod 0600 $GL/* &&
        systemctl restart gitlab-standin.service'
    check "journald only: no syslog daemon, no /var/log/mail.log" \
        '! systemctl is-active rsyslog.service syslog.socket && [ ! -e /var/log/mail.log ] && systemctl is-active systemd-journald.service'
    pf_hash >$W/out/postfix-before

    # The quick start.
    cd $W/pkg
    check "apt install ./gitlab-mailgate_*.deb names the next step" \
        'apt install -y ./gitlab-mailgate_*.deb >$W/out/install 2>&1; s=$?; cat $W/out/install; [ $s = 0 ] && grep -q "gitlab-mailgate setup --postfix" $W/out/install'
    check "gitlab-mailgate setup --postfix" "gitlab-mailgate setup --postfix"
    check "gitlab-mailgate check --postfix --send-test passes: smtpd asked the lookup and refused the test address" \
        'gitlab-mailgate check --postfix --send-test >$W/out/check 2>&1; s=$?; cat $W/out/check; [ $s = 0 ] && grep -q "asked gitlab-mailgate and refused .* during SMTP" $W/out/check'
    cd /

    check "smtpd refuses an unknown address: 550 5.1.1" "$SMTP nobody@$DOMAIN 550"
    check "smtpd refuses a key GitLab cannot act on: 550 5.1.1" "$SMTP incoming+no-such-key@$DOMAIN 550"
    check "smtpd takes a GitLab address and Postfix delivers it to GitLab over LMTP" \
        '$SMTP incoming+59d8df8370b7e95c5a49fbf86aeb2c93@$DOMAIN 250 &&
         for i in $(seq 100); do grep -q -l quickstart@example.org $W/standin/*.eml && break; sleep 0.2; done &&
         [ "$(grep -l quickstart@example.org $W/standin/*.eml | wc -l)" = 1 ]'
    check "the README's journalctl shows smtpd's refusal, the LMTP delivery and gitlab-mailgate" '
        journalctl -q --no-pager -t postfix/smtpd -t postfix/qmgr -t postfix/lmtp -t gitlab-mailgate >$W/out/journal &&
        grep "NOQUEUE: reject: RCPT from .*550 5.1.1 <nobody@$DOMAIN>" $W/out/journal &&
        grep "postfix/lmtp.*status=sent" $W/out/journal && grep -E " gitlab-mailgate\[[0-9]+\]: " $W/out/journal'
    check "XFORWARD: gitlab-mailgate's lines of the delivery start with Postfix's queue id; serve logged its start and the lookup's refusal" '
        q=$(sed -n "s/.* postfix\/lmtp\[[0-9]*\]: \([0-9A-F]*\): to=<incoming+59d8.*status=sent.*/\1/p" $W/out/journal) &&
        echo "queue id $q" && [ -n "$q" ] &&
        grep -E " gitlab-mailgate\[[0-9]+\]: $q: from=<alice@example.org>, " $W/out/journal &&
        grep -E " gitlab-mailgate\[[0-9]+\]: $q: to=<incoming\+59d8[^>]*>, .*status=sent " $W/out/journal &&
        grep -E " gitlab-mailgate\[[0-9]+\]: gitlab-mailgate [0-9.]+ starting: mailboxes incoming_email <incoming\+%\{key\}@$DOMAIN>.*GitLab http://127.0.0.1:$GITLAB_PORT" $W/out/journal &&
        grep -F "lookup: to=<nobody@$DOMAIN>, NOTFOUND (550 5.1.1 " $W/out/journal &&
        ! grep "status=bounced" $W/out/journal'
    # Without the lookup, the test mail goes on to gitlab-mailgate, which
    # refuses it over LMTP: check reads Postfix's verdict from the journal.
    maps=$(postconf -h relay_recipient_maps)
    check "without the lookup, check --send-test reads the verdict from the journal" '
        postconf -e relay_recipient_maps= && postfix reload &&
        gitlab-mailgate check --send-test >$W/out/check-journal 2>&1; s=$?;
        postconf -e "relay_recipient_maps=$maps" && postfix reload; cat $W/out/check-journal;
        [ $s = 0 ] && grep -q "refused the test key as it should.*read from the journal" $W/out/check-journal'
    check "nothing is queued and no non-delivery notice was sent" no_notice
    echo PHASE 1 DONE
else
    # After the reboot, no mail sent yet.
    check "after a reboot with no mail, /metrics answers" "/usr/bin/python3 $W/probe.py /metrics 200"
    check "after a reboot with no mail, /readyz answers 200" "/usr/bin/python3 $W/probe.py /readyz 200"
    check "after a reboot, smtpd refuses an unknown address (the lookup runs)" "$SMTP nobody@$DOMAIN 550"
    check "GitLab's secret rotated: check fails, GitLab refuses our token, the copy differs" '
        cp -p $GL/gitlab_incoming_email_secret $W/saved_secret &&
        secret $GL/gitlab_incoming_email_secret && systemctl restart gitlab-standin.service &&
        gitlab-mailgate check >$W/out/wrong 2>&1; s=$?; cat $W/out/wrong;
        cp -p $W/saved_secret $GL/gitlab_incoming_email_secret && systemctl restart gitlab-standin.service &&
        [ $s != 0 ] && grep -q "GitLab refuses our token" $W/out/wrong && grep -q "differs from GitLab" $W/out/wrong'
    check "with GitLab's secret back, check passes" "gitlab-mailgate check --postfix"
    # README, Troubleshooting: the start limit after a broken configuration.
    check "a broken configuration: systemd gives up, smtpd defers (451 4.3.0), the README's fix brings serve back" '
        C=/etc/gitlab-mailgate/config.toml && cp -p $C $W/config.good && echo "[broken" >>$C &&
        { systemctl restart gitlab-mailgate.service; true; } &&
        for i in $(seq 90); do systemctl is-failed --quiet gitlab-mailgate.socket && break; sleep 1; done &&
        journalctl -q --no-pager -u gitlab-mailgate.service -u gitlab-mailgate.socket | grep -E "Start request repeated too quickly|service-start-limit-hit" &&
        $SMTP nobody@$DOMAIN 451 && cp -p $W/config.good $C &&
        { gitlab-mailgate check >$W/out/check-stopped 2>&1; cat $W/out/check-stopped; true; } &&
        grep -q "^ok *config /etc/gitlab-mailgate/config.toml parses" $W/out/check-stopped &&
        systemctl reset-failed gitlab-mailgate.service gitlab-mailgate.socket &&
        systemctl start gitlab-mailgate.socket gitlab-mailgate.service &&
        /usr/bin/python3 $W/probe.py /readyz 200 && $SMTP nobody@$DOMAIN 550'
    check "gitlab-mailgate setup --undo: Postfix's configuration hashes as before setup" \
        'gitlab-mailgate setup --undo && pf_hash | diff $W/out/postfix-before - && postfix check'
    # Removing the package undoes a setup nobody undid (prerm).
    check "setup again, then apt purge gitlab-mailgate: Postfix is put back, the package, its configuration and units are gone" '
        gitlab-mailgate setup --postfix && ! pf_hash | diff -q $W/out/postfix-before - &&
        apt purge -y gitlab-mailgate >$W/out/purge 2>&1; s=$?; cat $W/out/purge; [ $s = 0 ] &&
        grep -q "putting Postfix.s configuration back as before setup" $W/out/purge &&
        [ ! -e /var/lib/gitlab-mailgate ] &&
        ! dpkg-query -W -f="\${db:Status-Abbrev}" gitlab-mailgate | grep -q "^[ir]" &&
        [ ! -e /etc/gitlab-mailgate ] && ! ls -d /etc/systemd/system/gitlab-mailgate* /etc/systemd/system/*/gitlab-mailgate* &&
        pf_hash | diff $W/out/postfix-before - && systemctl is-active postfix@-'
    check "nothing is queued and no non-delivery notice was sent" no_notice
    echo DONE
fi
EOF

# GitLab's gitlab.yml as Omnibus writes it, for setup's default path.
sed -e "s#@GITLAB_URL@#http://127.0.0.1:$gitlab_port#" -e 's#@DOMAIN@#incoming.example.com#' \
    "$repo/tests/data/gitlab.yml" >"$work/gitlab.yml"

echo 1 >"$work/phase"
smoke_boot
echo 2 >"$work/phase"
smoke_boot
smoke_finish
