//! The same hostile input through pipe mode (`deliver`, message on
//! standard input): odd bytes pass byte for byte, 30 MB against a 25 MB
//! limit bounces (69, 5.3.4) with bounded memory, hostile keys are unknown
//! users (67, 5.1.1) and never reach GitLab.

use crate::common::*;
use std::process::Command;

#[test]
fn odd_messages_reach_gitlab_byte_for_byte() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let messages: [&[u8]; 8] = [
        b"Subject: nul\0\nX-Nul: \0\n\nbody \0 with NUL\n\0\n",
        b"Subject: bare cr\rX-A: b\r\rbody\rline\r.\r",
        b"Subject: mixed\r\nX-A: lf\nX-B: cr\r\r\nbody\n.\n\r\n.\r\n",
        b"Subject: caf\xe9 \x80 \xc0\xaf \xe2\x82\nFrom: \xff\xfe <a@example.org>\n\n\xff body\n",
        b"",
        b"\n",
        b"no header here, just text\nand more text\n",
        b"no line ending at all",
    ];
    for (i, m) in messages.iter().enumerate() {
        let run = env.deliver(&[INCOMING_RCPT], m);
        assert_eq!(run.code, Some(0), "message {i}: {}{}", run.out(), run.err());
        assert!(run.stdout.is_empty(), "message {i}: {}", run.out());
    }
    let bodies = standin.bodies();
    assert_eq!(bodies.len(), messages.len());
    for (i, (body, m)) in bodies.iter().zip(messages).enumerate() {
        assert!(
            body.bytes == expected_body(INCOMING_RCPT, m),
            "message {i}: GitLab got {:?}",
            String::from_utf8_lossy(&body.bytes)
        );
    }
}

/// Runs `deliver` like [`TestEnv::deliver`] under GNU time, which reaps
/// it and reports its own peak RSS in KiB (GNU time, Debian package `time`;
/// .ci/run installs it).
/// Measured from here, `ru_maxrss` would also count this test process: a
/// child spawned with vfork(2) keeps its parent's high-water mark.
pub(super) fn deliver_measured(env: &TestEnv, args: &[&str], stdin: &[u8]) -> (Run, u64) {
    let time = std::path::Path::new("/usr/bin/time");
    assert!(
        time.exists(),
        "/usr/bin/time is missing (Debian package time): deliver's memory cannot be measured"
    );
    let report = env.dir().join("time.out");
    let mut cmd = Command::new(time);
    cmd.arg("-o")
        .arg(&report)
        .args(["-f", "%M", bin(), "deliver", "--config"])
        .arg(&env.config)
        .args(args)
        .env_remove("GITLAB_MAILGATE_CONFIG");
    let run = run(&mut cmd, stdin);
    env.assert_no_secrets(&run.stdout);
    env.assert_no_secrets(&run.stderr);
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let peak = text.lines().last().and_then(|l| l.trim().parse().ok());
    (
        run,
        peak.unwrap_or_else(|| panic!("GNU time wrote {text:?}")),
    )
}

#[test]
fn thirty_megabytes_against_a_25_megabyte_limit_bounces_69() {
    let (env, standin) =
        TestEnv::with_standin(StandIn::builder(), |s| s.max_message_size = 26_214_400);
    let mut big = b"Subject: thirty megabytes\n\n".to_vec();
    big.extend(b"x".repeat(30 * 1024 * 1024));
    big.push(b'\n');
    let (run, peak_kib) = deliver_measured(&env, &[INCOMING_RCPT, SERVICE_DESK_RCPT], &big);
    let out = run.out();
    assert_eq!(run.code, Some(69), "{out}{}", run.err());
    assert!(out.starts_with("5.3.4 "), "{out}");
    assert!(standin.requests().is_empty(), "{:?}", standin.requests());
    // It keeps at most the limit (plus one byte) and drains the rest.
    eprintln!("deliver peak RSS: {peak_kib} KiB");
    assert!(
        peak_kib < 100 * 1024,
        "deliver peaked at {} MiB",
        peak_kib / 1024
    );
}

#[test]
fn hostile_keys_are_unknown_users_and_never_reach_gitlab() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let msg = message("pipe-keys");
    for rcpt in [
        "incoming+group/../project+token@incoming.example.com",
        "incoming+../../etc/passwd+token@incoming.example.com",
        "incoming+/etc/passwd@incoming.example.com",
        "contact+group/../project@incoming.example.com",
        "incoming+gitlab%2forg+token@incoming.example.com",
        "incoming+%2e%2e%2fadmin+token@incoming.example.com",
        "incoming+grp/\"proj\"+token@incoming.example.com",
        "\"incoming+grp/proj\"@incoming.example.com",
        "incoming+grp/proj'+token@incoming.example.com",
        "incoming+grp/proj\nX-Evil: 1@incoming.example.com",
        "incoming+grp/proj\r\nX-Evil: 1@incoming.example.com",
        "incoming+grp/proj\r@incoming.example.com",
        "incoming+grp/pro j+token@incoming.example.com",
        "incoming+59d8df8370b7e95c5a49fbf86aeb2c93\n@incoming.example.com",
        // Found by libFuzzer: white space around a valid address used to match.
        "incoming+59d8df8370b7e95c5a49fbf86aeb2c93@incoming.example.com\n",
        " incoming+59d8df8370b7e95c5a49fbf86aeb2c93@incoming.example.com",
        "<incoming+59d8df8370b7e95c5a49fbf86aeb2c93@incoming.example.com>",
        "incoming@incoming.example.com\r\nX-Evil: 1",
    ] {
        let run = env.deliver(&[rcpt], &msg);
        assert_eq!(run.code, Some(67), "{rcpt:?}: {}{}", run.out(), run.err());
        assert!(run.out().starts_with("5.1.1 "), "{rcpt:?}: {}", run.out());
    }
    assert!(standin.requests().is_empty(), "{:?}", standin.requests());

    // A legacy key with `/` is a GitLab key.
    let legacy = "incoming+group/project+token@incoming.example.com";
    let run = env.deliver(&[legacy], &msg);
    assert_eq!(run.code, Some(0), "{}{}", run.out(), run.err());
    let bodies = standin.bodies();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0].bytes, expected_body(legacy, &msg));
}
