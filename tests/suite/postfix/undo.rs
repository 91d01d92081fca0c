//! `gitlab-mailgate setup --undo` (issue 19 item 8): after `setup
//! --postfix` (transport table, transport_maps, relay_domains, the
//! recipient check and Debian's chrooted lmtp taken out of the chroot),
//! `--undo` leaves the instance's configuration directory hashing as
//! before setup, and a second `--undo` changes nothing.

use super::harness::{run, tree_hash, Postfix};
use super::mailgate::Env;
use super::setup::omnibus_gitlab_yml;
use std::fs;
use std::path::Path;
use std::process::Command;

/// `gitlab-mailgate setup ARGS --state-file STATE`: exit code and output.
fn setup(env: &Env, state: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(&env.bin)
        .arg("setup")
        .arg("--config")
        .arg(&env.config)
        .arg("--state-file")
        .arg(state)
        .args(args)
        .output()
        .expect("run gitlab-mailgate setup");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("--- setup {args:?} (exit {:?}):\n{text}", out.status.code());
    env.assert_no_secrets(&text);
    (out.status.code(), text)
}

#[test]
fn setup_undo_puts_postfix_back_byte_for_byte() {
    super::preflight();
    let env = Env::new();
    let yml = omnibus_gitlab_yml(&env);
    let pf = Postfix::bare();
    let etc = Path::new(pf.config_dir());
    // As Debian ships it: lmtp chrooted, in master.cf.proto's columns
    // (postconf -F would realign them), and a relay domain of the admin's.
    let master = etc.join("master.cf");
    let text = fs::read_to_string(&master).unwrap();
    let debian = "lmtp      unix  -       -       y       -       -       lmtp\n";
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("lmtp ") {
                debian.to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert!(
        text.contains(debian),
        "no lmtp entry in {}",
        master.display()
    );
    fs::write(&master, text).unwrap();
    // The admin's relay domain has its own recipient table, as setup asks
    // before it puts its lookup into relay_recipient_maps.
    let relay_table = etc.join("relay-recipients");
    fs::write(&relay_table, "@relay.example\tok\n").unwrap();
    let relay_maps = format!("relay_recipient_maps=texthash:{}", relay_table.display());
    run(
        "/usr/sbin/postconf",
        &[
            "-c",
            pf.config_dir(),
            "-e",
            "relay_domains=relay.example",
            &relay_maps,
        ],
    );
    let state = env.dir.join("state/setup-undo.toml");
    let before = tree_hash(etc);

    let socket = format!("lmtp:unix:{}/lmtp.sock", env.dir.display());
    let (_, first) = setup(
        &env,
        &state,
        &[
            "--gitlab-config",
            yml.to_str().unwrap(),
            "--postfix-config",
            pf.config_dir(),
            "--lmtp-target",
            &socket,
            "--verify-recipients",
            "--force",
        ],
    );
    for want in [
        "-e transport_maps=texthash:",
        "relay_domains=relay.example, ",
        "-F lmtp/unix/chroot=n",
        "smtpd_recipient_restrictions=",
        "relay_recipient_maps=socketmap:",
    ] {
        assert!(first.contains(want), "setup lacks {want:?}:\n{first}");
    }
    assert_ne!(tree_hash(etc), before, "setup changed nothing");
    assert!(
        state.exists(),
        "setup recorded nothing in {}",
        state.display()
    );

    let (code, undo) = setup(&env, &state, &["--undo"]);
    assert_eq!(code, Some(0), "{undo}");
    for want in [
        "-X transport_maps",
        "-e relay_domains=relay.example",
        "master.cf as before setup",
        "remove ",
        "ok    postfix -c ",
    ] {
        assert!(undo.contains(want), "--undo lacks {want:?}:\n{undo}");
    }
    assert!(!undo.lines().any(|l| l.starts_with("keep")), "{undo}");
    assert_eq!(
        tree_hash(etc),
        before,
        "--undo left {} other than before setup",
        etc.display()
    );

    let (code, again) = setup(&env, &state, &["--undo"]);
    assert_eq!(code, Some(0), "{again}");
    assert!(again.contains("setup --undo: nothing changed"), "{again}");
    assert_eq!(tree_hash(etc), before);
}

#[test]
fn setup_undo_leaves_what_the_admin_changed_since() {
    super::preflight();
    let env = Env::new();
    let yml = omnibus_gitlab_yml(&env);
    let pf = Postfix::bare();
    let state = env.dir.join("setup-undo.toml");
    let target = format!("lmtp:inet:127.0.0.1:{}", env.lmtp_port);
    let (_, first) = setup(
        &env,
        &state,
        &[
            "--gitlab-config",
            yml.to_str().unwrap(),
            "--postfix-config",
            pf.config_dir(),
            "--lmtp-target",
            &target,
            "--force",
        ],
    );
    assert!(first.contains("-e relay_domains="), "{first}");
    // The admin's own change after setup: undo must not take it back.
    let postconf = |args: &[&str]| {
        let mut all = vec!["-c", pf.config_dir()];
        all.extend_from_slice(args);
        run("/usr/sbin/postconf", &all)
    };
    postconf(&["-e", "relay_domains=mine.example"]);
    for _ in 0..2 {
        let (code, undo) = setup(&env, &state, &["--undo"]);
        assert_eq!(code, Some(1), "{undo}");
        assert!(
            undo.lines()
                .any(|l| l.starts_with("keep  relay_domains: set to \"mine.example\"")),
            "{undo}"
        );
        assert!(state.exists(), "the record of what is left went: {undo}");
    }
    // Only it stays; the rest went.
    let main_cf = postconf(&["-n"]);
    assert!(
        main_cf.contains("relay_domains = mine.example"),
        "{main_cf}"
    );
    assert!(!main_cf.contains("transport_maps"), "{main_cf}");
}
