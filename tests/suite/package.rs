//! The Debian package: the shipped configuration is one the program
//! accepts, and the .deb built by `packaging/build-deb.sh` installs,
//! upgrades, removes and purges as promised on this machine.
//!
//! The package test needs root, dpkg and apt-get; without them it says so
//! and passes. It replaces any copy of the package installed before and
//! leaves the package purged.

use crate::common;

use common::{keygen, temp_dir, write_secret};
use gitlab_mailgate::config::{Config, LogTarget};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PACKAGE: &str = "gitlab-mailgate";
const USER: &str = "gitlab-mailgate";
const CONFIG: &str = "/etc/gitlab-mailgate/config.toml";
const DOC: &str = "/usr/share/doc/gitlab-mailgate";
const MAN: &str = "/usr/share/man/man8/gitlab-mailgate.8.gz";
const UNITS: [&str; 4] = [
    "gitlab-mailgate.service",
    "gitlab-mailgate.socket",
    "gitlab-mailgate@.service",
    "gitlab-mailgate@.socket",
];
const POSTFIX_FILES: [&str; 7] = [
    "README.md",
    "main.cf",
    "master.cf",
    "transport.lmtp-unix",
    "transport.lmtp-inet",
    "transport.pipe",
    "recipient-verify",
];

fn source(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// packaging/config.toml with its /etc/gitlab-mailgate/ paths moved to
/// `dir`, where the secret and signing key files it names exist.
fn packaged_config(dir: &Path) -> String {
    for mailbox in ["incoming_email", "service_desk_email"] {
        write_secret(&dir.join(format!("{mailbox}_secret")));
        keygen(dir, mailbox, &format!("{mailbox}_signing_key.pem"));
    }
    std::fs::read_to_string(source("packaging/config.toml"))
        .expect("read packaging/config.toml")
        .replace("/etc/gitlab-mailgate/", &format!("{}/", dir.display()))
}

/// Turns every commented-out setting (`#key = …`, `#[section]`) into a
/// setting; prose comments start with `# ` and stay.
fn uncomment_settings(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => rest,
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

#[test]
fn packaged_config_is_accepted_and_shows_the_real_defaults() {
    let dir = temp_dir();
    let text = packaged_config(dir.path());
    let path = dir.path().join("config.toml");

    let shipped = Config::parse(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shipped.gitlab.url, "https://gitlab.example.com");
    assert_eq!(shipped.mailboxes.len(), 1, "only incoming_email is active");

    // With every optional line switched on, the values must be the ones the
    // program uses when they are absent: the comments tell the truth.
    let all = Config::parse(&path, &uncomment_settings(&text))
        .unwrap_or_else(|e| panic!("with every setting uncommented: {e}"));
    assert_eq!(all.mailboxes.len(), 2, "service_desk_email is shown too");
    assert_eq!(all.gitlab.host, shipped.gitlab.host);
    assert_eq!(all.gitlab.timeout, shipped.gitlab.timeout);
    assert!(all.gitlab.ca_file.is_some());
    let incoming = (&all.mailboxes[0], &shipped.mailboxes[0]);
    assert_eq!(incoming.0.catch_all, incoming.1.catch_all);
    assert_eq!(incoming.0.strict_keys, incoming.1.strict_keys);
    assert_eq!(all.mailboxes[1].catch_all, shipped.mailboxes[0].catch_all);
    assert_eq!(
        all.mailboxes[1].strict_keys,
        shipped.mailboxes[0].strict_keys
    );
    assert_eq!(all.max_message_size, shipped.max_message_size);
    assert_eq!(all.pipe_deadline, shipped.pipe_deadline);
    assert_eq!(format!("{:?}", all.lmtp), format!("{:?}", shipped.lmtp));
    assert_eq!(all.guard, shipped.guard);
    assert_eq!(all.log_target, LogTarget::Syslog("/dev/log".into()));
    if Path::new("/dev/log").exists() {
        assert_eq!(shipped.log_target, all.log_target);
    } else {
        assert_eq!(shipped.log_target, LogTarget::Stderr);
    }
}

/// Runs a command and returns its output; panics with both outputs when it
/// fails. `timeout` bounds every command.
fn run(what: &str, program: &str, args: &[&str]) -> Output {
    let out = try_run(program, args);
    assert!(
        out.status.success(),
        "{what}: {program} {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn try_run(program: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("1800")
        .arg(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `program` can be found on PATH.
fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// dpkg's abbreviated status of the package ("ii ", "rc "), or "" when
/// dpkg does not know it.
fn dpkg_status() -> String {
    let out = try_run("dpkg-query", &["-W", "-f=${db:Status-Abbrev}", PACKAGE]);
    if out.status.success() {
        stdout(&out)
    } else {
        String::new()
    }
}

/// `getent DATABASE NAME` split into fields, or None.
fn getent(database: &str, name: &str) -> Option<Vec<String>> {
    let out = try_run("getent", &[database, name]);
    out.status
        .success()
        .then(|| stdout(&out).trim().split(':').map(String::from).collect())
}

fn mode_owner(path: &str) -> (u32, u32, u32) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (meta.mode() & 0o7777, meta.uid(), meta.gid())
}

fn apt_install(deb: &str, extra: &[&str]) {
    let mut args = vec!["install", "-y", "-o", "DPkg::Lock::Timeout=300"];
    args.extend_from_slice(extra);
    args.push(deb);
    run("install the package", "apt-get", &args);
}

#[test]
fn deb_builds_installs_and_purges() {
    // Installing and purging creates and deletes the system user the
    // Postfix tests run programs as: not while one of them runs.
    let _user = common::system_user_alone();
    let root = stdout(&try_run("id", &["-u"])).trim() == "0";
    assert!(
        root && have("dpkg") && have("apt-get"),
        "the package test installs the .deb: it needs root, dpkg and apt-get (run as .ci/run does)"
    );
    if !dpkg_status().is_empty() {
        println!("note: purging the copy of {PACKAGE} installed before");
        run("purge the old copy", "dpkg", &["-P", PACKAGE]);
    }

    let built = run("build the package", "sh", &["packaging/build-deb.sh"]);
    let deb = stdout(&built)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(
        deb.ends_with(".deb") && Path::new(&deb).is_file(),
        "build-deb.sh printed no .deb path: {deb:?}"
    );
    println!("built {deb}");
    // Before this machine has the package: the container starts as a copy.
    quickstart_smoke_test(&deb);

    apt_install(&deb, &[]);
    assert_eq!(dpkg_status().trim(), "ii");

    // The program.
    assert_eq!(mode_owner("/usr/bin/gitlab-mailgate"), (0o755, 0, 0));
    let version = run("--version", "/usr/bin/gitlab-mailgate", &["--version"]);
    assert_eq!(
        stdout(&version).trim(),
        format!("gitlab-mailgate {}", env!("CARGO_PKG_VERSION"))
    );

    // The user and group.
    let user = getent("passwd", USER).expect("the user gitlab-mailgate exists");
    let group = getent("group", USER).expect("the group gitlab-mailgate exists");
    let uid: u32 = user[2].parse().expect("uid");
    let gid: u32 = group[2].parse().expect("gid");
    assert!(uid < 1000, "not a system user: {user:?}");
    assert_eq!(user[3], group[2], "primary group: {user:?}");
    assert_eq!(user[5], "/nonexistent");
    assert!(!Path::new("/nonexistent").exists());

    // The configuration: a conffile, readable by the group only.
    let conffiles = std::fs::read_to_string("/var/lib/dpkg/info/gitlab-mailgate.conffiles")
        .expect("read the conffiles list");
    assert!(conffiles.lines().any(|l| l.trim() == CONFIG), "{conffiles}");
    assert_eq!(mode_owner("/etc/gitlab-mailgate"), (0o750, 0, gid));
    assert_eq!(mode_owner(CONFIG), (0o640, 0, gid));
    assert_eq!(
        std::fs::read_to_string(CONFIG).expect("read the config"),
        std::fs::read_to_string(source("packaging/config.toml")).expect("read the source")
    );

    // The man page, as man renders it, without complaints.
    let man = Command::new("man")
        .args(["--warnings", "-l", MAN])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .output()
        .expect("run man");
    let page = stdout(&man);
    assert!(man.status.success(), "man -l failed: {man:?}");
    let warnings = String::from_utf8_lossy(&man.stderr);
    assert!(warnings.trim().is_empty(), "man warnings: {warnings}");
    for needle in [
        "GITLAB-MAILGATE(8)",
        "SYNOPSIS",
        "--config FILE",
        "PIPE MODE",
        "LMTP",
        "EXIT STATUS",
        "EX_TEMPFAIL",
        "FILES",
        CONFIG,
    ] {
        assert!(
            page.contains(needle),
            "no {needle:?} in the man page:\n{page}"
        );
    }

    // Documentation and the Postfix examples, as in the source tree.
    for doc in ["README.Debian", "README.md", "copyright"] {
        assert!(Path::new(DOC).join(doc).is_file(), "{DOC}/{doc} is missing");
    }
    // The commented example `setup` points at (it edits /etc's copy).
    let example = std::fs::read(format!("{DOC}/examples/config.toml"))
        .unwrap_or_else(|e| panic!("{DOC}/examples/config.toml: {e}"));
    assert!(
        example == std::fs::read(source("packaging/config.toml")).expect("source file"),
        "{DOC}/examples/config.toml differs from packaging/config.toml"
    );
    for name in POSTFIX_FILES {
        let installed = std::fs::read(format!("{DOC}/postfix/{name}"))
            .unwrap_or_else(|e| panic!("{DOC}/postfix/{name}: {e}"));
        let original = std::fs::read(source(&format!("postfix/{name}"))).expect("source file");
        assert!(
            installed == original,
            "{DOC}/postfix/{name} differs from postfix/{name}"
        );
    }

    // The systemd units: installed, valid, neither enabled nor running.
    for unit in UNITS {
        let path = format!("/usr/lib/systemd/system/{unit}");
        assert_eq!(mode_owner(&path), (0o644, 0, 0), "{path}");
        assert!(
            have("systemd-analyze"),
            "systemd-analyze is missing (Debian package systemd; .ci/run installs it)"
        );
        let out = run("verify the unit", "systemd-analyze", &["verify", &path]);
        let complaints = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
        assert!(complaints.trim().is_empty(), "{unit}: {complaints}");
    }
    assert_nothing_runs_or_is_enabled();
    systemd_smoke_test();
    assert_nothing_runs_or_is_enabled();

    // Installing again changes nothing and keeps the administrator's edits.
    let edited = format!(
        "{}# edited by the package test\n",
        std::fs::read_to_string(CONFIG).expect("read the config")
    );
    std::fs::write(CONFIG, &edited).expect("edit the config");
    let secret = "/etc/gitlab-mailgate/incoming_email_secret";
    write_secret(Path::new(secret));
    run("chgrp the secret", "chgrp", &[USER, secret]);
    run("chmod the secret", "chmod", &["0640", secret]);
    apt_install(&deb, &["--reinstall"]);
    assert_eq!(std::fs::read_to_string(CONFIG).expect("read"), edited);
    assert_eq!(getent("passwd", USER), Some(user.clone()), "user changed");
    assert_eq!(getent("group", USER), Some(group.clone()), "group changed");
    assert_nothing_runs_or_is_enabled();

    // Remove: the program goes, configuration, secrets and user stay.
    run("remove", "dpkg", &["-r", PACKAGE]);
    assert_eq!(dpkg_status().trim(), "rc");
    assert!(!Path::new("/usr/bin/gitlab-mailgate").exists());
    assert!(!Path::new(MAN).exists());
    assert_eq!(std::fs::read_to_string(CONFIG).expect("kept"), edited);
    assert!(Path::new(secret).exists());
    assert!(getent("passwd", USER).is_some());

    // Purge: configuration, secrets, user and group go too.
    run("purge", "dpkg", &["-P", PACKAGE]);
    assert_eq!(dpkg_status().trim(), "");
    assert!(!Path::new("/etc/gitlab-mailgate").exists());
    assert!(getent("passwd", USER).is_none(), "the user is still there");
    assert!(getent("group", USER).is_none(), "the group is still there");
    for unit in UNITS {
        // deb-systemd-helper masks the units on remove; purge unmasks them.
        let link = format!("/etc/systemd/system/{unit}");
        assert!(std::fs::symlink_metadata(&link).is_err(), "{link} is left");
    }
}

/// The README's quick start, verbatim, on a stock Debian 12 host booted
/// under systemd with journald only, against the system Postfix: install,
/// `setup --postfix`, `check --postfix --send-test`, smtpd refusing an
/// unknown address with nothing queued, /metrics and /readyz after a
/// reboot, a rotated secret failing `check`, `setup --undo`, purge
/// (packaging/quickstart-smoke.sh).
fn quickstart_smoke_test(deb: &str) {
    smoke_test("quick start", &["packaging/quickstart-smoke.sh", deb]);
}

/// The units under a real systemd, in a throwaway container
/// (packaging/systemd-smoke.sh).
fn systemd_smoke_test() {
    smoke_test("systemd smoke test", &["packaging/systemd-smoke.sh"]);
}

/// Runs a smoke script (packaging/smoke-lib.sh) and prints its checks.
/// .ci/run installs what it needs, so a missing piece is a failure, not a
/// reason to skip.
fn smoke_test(what: &str, script: &[&str]) {
    let jwt = try_run("/usr/bin/python3", &["-c", "import jwt"]);
    assert!(
        have("systemd-nspawn") && jwt.status.success() && getent("passwd", "postfix").is_some(),
        "the {what} needs systemd-nspawn (Debian package systemd-container), \
         /usr/bin/python3 with python3-jwt and Postfix: run .ci/run"
    );
    let out = run(what, "sh", script);
    let text = stdout(&out);
    print!("{text}");
    // A note (what this machine could not isolate) must show in the test
    // run's output, which captures print!: write past the capture.
    for note in text.lines().filter(|l| l.starts_with("note:")) {
        let _ = writeln!(std::io::stderr(), "{note}");
    }
}

/// No process runs the packaged binary, no unit is enabled, and where
/// systemd runs, no unit is active. (Processes of the user gitlab-mailgate
/// are no sign: Postfix tests run copies of the binary as that user.)
fn assert_nothing_runs_or_is_enabled() {
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        if std::fs::read_link(entry.path().join("exe"))
            .is_ok_and(|exe| exe == Path::new("/usr/bin/gitlab-mailgate"))
        {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            panic!(
                "the packaged binary runs: pid {:?}: {}",
                entry.file_name(),
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            );
        }
    }
    for wants in std::fs::read_dir("/etc/systemd/system").expect("read /etc/systemd/system") {
        let Ok(dir) = wants else { continue };
        if !dir.path().is_dir() {
            continue;
        }
        for link in std::fs::read_dir(dir.path())
            .expect("read a .wants directory")
            .flatten()
        {
            let name = link.file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with("gitlab-mailgate"),
                "enabled: {}",
                link.path().display()
            );
        }
    }
    if Path::new("/run/systemd/system").is_dir() {
        for unit in ["gitlab-mailgate.service", "gitlab-mailgate.socket"] {
            let out = try_run("systemctl", &["is-active", unit]);
            assert_ne!(stdout(&out).trim(), "active", "{unit} was started");
        }
    }
}
