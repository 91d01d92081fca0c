//! `gitlab-mailgate setup` against what a real host throws at it: the
//! Omnibus first run in a dry run, values with quotes and backslashes,
//! oversized and special files where it reads, a configuration the admin
//! added to, the pointer to the shipped example, and access granted by an
//! ACL or only through a group of GitLab's.
//!
//! Setup runs as root on an Omnibus-like layout (`gitlab-rails/etc` with
//! tests/data/gitlab.yml and two secret files) beside the configuration,
//! without `--postfix` and delivering over TCP, so no Postfix instance
//! and no systemd are touched. The service user comes from the Postfix
//! tests' [`Env`], which creates it when absent.

use crate::common::{project_file, run_merged};
use crate::postfix::mailgate::Env;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `base/gitlab-rails/etc/gitlab.yml` from tests/data/gitlab.yml after
/// `edit`, with GitLab at the env's port and both secret files beside
/// it (copies of the env's), all root:gitlab-mailgate 0640 in
/// directories open to all; returns the gitlab.yml path.
fn omnibus(env: &Env, base: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let etc = base.join("gitlab-rails/etc");
    fs::create_dir_all(&etc).expect("create gitlab-rails/etc");
    for dir in [base.to_path_buf(), base.join("gitlab-rails"), etc.clone()] {
        chmod(&dir, 0o755);
    }
    let text = fs::read_to_string(project_file("tests/data/gitlab.yml"))
        .expect("read tests/data/gitlab.yml")
        .replace(
            "@GITLAB_URL@",
            &format!("http://127.0.0.1:{}", env.gitlab_port),
        )
        .replace("@DOMAIN@", "incoming.example.com");
    let yml = etc.join("gitlab.yml");
    env.write_private(&yml, &edit(text));
    for (mailbox, secret) in [
        ("incoming_email", &env.incoming_secret),
        ("service_desk_email", &env.service_desk_secret),
    ] {
        let text = fs::read_to_string(secret).expect("read secret");
        env.write_private(&etc.join(format!("gitlab_{mailbox}_secret")), &text);
    }
    yml
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Runs `setup` as root for `yml` and `config`, without Postfix; returns
/// the exit code and the output.
fn setup(env: &Env, yml: &Path, config: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut cmd = Command::new(&env.bin);
    cmd.arg("setup")
        .arg("--gitlab-config")
        .arg(yml)
        .arg("--config")
        .arg(config)
        .arg("--lmtp-target")
        .arg(format!("lmtp:inet:127.0.0.1:{}", env.lmtp_port))
        .args(extra);
    let run = run_merged(&mut cmd, b"");
    let text = run.out();
    println!("--- setup {extra:?} (exit {:?}):\n{text}", run.code);
    env.assert_no_secrets(&text);
    (run.code, text)
}

/// Asserts setup itself succeeded (check, run after it, may still fail:
/// nothing listens for GitLab or LMTP here).
fn assert_setup_ok(out: &str) {
    assert!(!out.contains("FAIL  setup"), "setup failed:\n{out}");
    assert!(
        out.contains("change(s) made") || out.contains("nothing changed"),
        "{out}"
    );
}

fn toml_of(path: &Path) -> toml::Table {
    let text = fs::read_to_string(path).expect("read the written configuration");
    text.parse()
        .unwrap_or_else(|e| panic!("setup wrote invalid TOML ({e}):\n{text}"))
}

/// Issue 18.10: the usual Omnibus first run (the packaged example in
/// place, gitlab-rails/etc closed to the service user, so the secrets are
/// to be copied) in a dry run reports the copies and the write and exits
/// 0, having checked what it would have, not copies it never made.
#[test]
fn a_dry_run_of_the_omnibus_first_run_reports_and_exits_0() {
    let env = Env::new();
    let yml = omnibus(&env, &env.dir, |t| t);
    chmod(yml.parent().unwrap(), 0o700);
    let example = fs::read(project_file("packaging/config.toml")).expect("packaging/config.toml");
    fs::write(&env.config, &example).expect("write the packaged example");

    let (code, out) = setup(&env, &yml, &env.config, &["--dry-run"]);
    assert_eq!(code, Some(0), "{out}");
    for want in ["would  copy ", "would  write ", "setup: dry run, "] {
        assert!(out.contains(want), "dry run lacks {want:?}:\n{out}");
    }
    assert_eq!(fs::read(&env.config).unwrap(), example, "the dry run wrote");
    assert!(!env.dir.join("incoming_email_secret").exists(), "it copied");
}

/// Issue 18.11: a `"` or `\` in a path, URL or host read from gitlab.yml
/// is written as a value, in both of setup's modes.
#[test]
fn quotes_and_backslashes_from_gitlab_yml_stay_values() {
    let env = Env::new();
    // config_file mode: the service user reads GitLab's file, whose path
    // has both characters.
    let base = env.dir.join("we\"ird\\dir");
    let yml = omnibus(&env, &base, |t| t);
    let config = env.dir.join("plain.toml");
    let (_, out) = setup(&env, &yml, &config, &[]);
    assert_setup_ok(&out);
    let written = toml_of(&config);
    assert_eq!(
        written["gitlab"]["config_file"].as_str(),
        yml.to_str(),
        "{written}"
    );

    // Copy mode: the URL and host are written, with both characters.
    let url = format!("http://127.0.0.1:{}/a\"b\\c", env.gitlab_port);
    let yml = omnibus(&env, &env.dir.join("copy"), |t| {
        t.replace(
            "host: gitlab.example.com",
            "host: 'git\"lab\\x.example.com'",
        )
        .replace(
            &format!("gitlab_url: http://127.0.0.1:{}", env.gitlab_port),
            &format!("gitlab_url: '{url}'"),
        )
    });
    chmod(yml.parent().unwrap(), 0o700);
    let config = env.dir.join("copied.toml");
    let (_, out) = setup(&env, &yml, &config, &[]);
    assert_setup_ok(&out);
    let written = toml_of(&config);
    assert_eq!(written["gitlab"]["url"].as_str(), Some(url.as_str()));
    assert_eq!(
        written["gitlab"]["host"].as_str(),
        Some("git\"lab\\x.example.com")
    );
}

/// Makes a FIFO at `path` (nobody ever writes to it).
fn mkfifo(path: &Path) {
    let _ = fs::remove_file(path);
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o640) }, 0, "mkfifo");
}

/// Issue 18.12: what setup reads is a regular file of bounded size: an
/// oversized gitlab.yml, a FIFO for a secret to copy and a FIFO for the
/// configuration are each a clear error at once, never a hang or a read
/// without end.
#[test]
fn setup_reads_only_bounded_regular_files() {
    let env = Env::new();
    let yml = omnibus(&env, &env.dir, |t| t);
    let huge = env.dir.join("huge.yml");
    let mut text = fs::read_to_string(&yml).unwrap();
    text.push_str(&format!("# {}\n", "x".repeat(5 * 1024 * 1024)));
    fs::write(&huge, text).unwrap();
    let (code, out) = setup(&env, &huge, &env.config, &["--force"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("bytes such a file may have"), "{out}");

    // A configuration that is a FIFO.
    let fifo_config = env.dir.join("fifo.toml");
    mkfifo(&fifo_config);
    let (code, out) = setup(&env, &yml, &fifo_config, &["--force"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not a regular file"), "{out}");

    // A secret to copy that is a FIFO (copy mode: etc closed).
    mkfifo(&yml.parent().unwrap().join("gitlab_incoming_email_secret"));
    chmod(yml.parent().unwrap(), 0o700);
    let (code, out) = setup(&env, &yml, &env.config, &["--force"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not a regular file"), "{out}");
}

/// Issue 19.4: what the admin added (a section, a setting, a comment)
/// survives setup, forced or not, and the diff shows settings.
#[test]
fn setup_keeps_what_the_admin_added() {
    let env = Env::new();
    let yml = omnibus(&env, &env.dir, |t| t);
    chmod(yml.parent().unwrap(), 0o700);
    fs::remove_file(&env.config).expect("remove the env's configuration");
    let (_, out) = setup(&env, &yml, &env.config, &[]);
    assert_setup_ok(&out);

    let mut text = fs::read_to_string(&env.config).unwrap();
    text.push_str("\n# metrics for our Prometheus\n[http]\nlisten = \"127.0.0.1:9725\"\n");
    text = text.replace("[gitlab]\n", "[gitlab]\ntimeout_secs = 7 # slow GitLab\n");
    env.write_private(&env.config, &text);
    let (_, out) = setup(&env, &yml, &env.config, &[]);
    assert_setup_ok(&out);
    assert!(out.contains("setup: nothing changed"), "{out}");

    // GitLab's address changes: --force picks it up, and only it.
    let yml = omnibus(&env, &env.dir, |t| {
        t.replace("incoming+%{key}@", "in+%{key}@")
    });
    chmod(yml.parent().unwrap(), 0o700);
    let (_, out) = setup(&env, &yml, &env.config, &["--force"]);
    assert_setup_ok(&out);
    assert!(
        out.contains("+ incoming_email.address = \"in+%{key}@incoming.example.com\""),
        "{out}"
    );
    let diff: Vec<&str> = out.lines().filter(|l| l.starts_with("        ")).collect();
    assert_eq!(
        diff.len(),
        2,
        "the diff is more than the one setting:\n{out}"
    );
    let after = fs::read_to_string(&env.config).unwrap();
    for kept in [
        "# metrics for our Prometheus\n[http]\nlisten = \"127.0.0.1:9725\"\n",
        "timeout_secs = 7 # slow GitLab\n",
    ] {
        assert!(after.contains(kept), "lost {kept:?}:\n{after}");
    }
}

/// Issue 19.5: the configuration setup writes points at the commented
/// example, and the package installs packaging/config.toml right there.
#[test]
fn the_written_configuration_points_at_an_example_the_package_ships() {
    let env = Env::new();
    let yml = omnibus(&env, &env.dir, |t| t);
    fs::remove_file(&env.config).expect("remove the env's configuration");
    let (_, out) = setup(&env, &yml, &env.config, &[]);
    assert_setup_ok(&out);
    let text = fs::read_to_string(&env.config).unwrap();
    let pointer = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .find(|w| w.starts_with("/usr/share/doc/gitlab-mailgate/"))
        .unwrap_or_else(|| panic!("no pointer to the documentation:\n{text}"));

    let cargo: toml::Table = fs::read_to_string(project_file("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let assets = cargo["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .expect("cargo-deb assets");
    let shipped = assets.iter().any(|a| {
        let a = a.as_array().unwrap();
        a[0].as_str() == Some("packaging/config.toml")
            && Some(pointer.trim_start_matches('/')) == a[1].as_str()
    });
    assert!(
        shipped,
        "{pointer} is not where the package installs packaging/config.toml: {assets:?}"
    );
}

/// Sets the access ACL of `dir` to its owner's rwx plus `x` for `uid`
/// (setfacl -m u:UID:x, written as the kernel's xattr: the package acl
/// may be missing, as on a fresh Debian).
fn acl_search_for(dir: &Path, uid: u32) {
    const VERSION: u32 = 2;
    let entry = |tag: u16, perm: u16, id: u32| {
        let mut e = tag.to_le_bytes().to_vec();
        e.extend(perm.to_le_bytes());
        e.extend(id.to_le_bytes());
        e
    };
    let mut acl = VERSION.to_le_bytes().to_vec();
    for e in [
        entry(0x01, 7, u32::MAX), // user::rwx
        entry(0x02, 1, uid),      // user:UID:--x
        entry(0x04, 0, u32::MAX), // group::---
        entry(0x10, 1, u32::MAX), // mask::--x
        entry(0x20, 0, u32::MAX), // other::---
    ] {
        acl.extend(e);
    }
    let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    let name = c"system.posix_acl_access";
    // SAFETY: valid NUL-terminated strings and a buffer of acl.len() bytes.
    let rc = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            acl.as_ptr().cast(),
            acl.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "setxattr: {}", std::io::Error::last_os_error());
}

/// Issue 19.7: access is what the kernel says for the service user: an
/// ACL that lets it in is honoured (no copies), and a directory open only
/// to a group of GitLab's never gets "join that group" for advice.
#[test]
fn access_follows_the_kernel_and_never_advises_joining_a_group() {
    let env = Env::new();
    let yml = omnibus(&env, &env.dir, |t| t);
    let etc = yml.parent().unwrap();
    chmod(etc, 0o700);
    let id = Command::new("id")
        .args(["-u", crate::postfix::mailgate::USER])
        .output()
        .expect("run id");
    let uid = String::from_utf8_lossy(&id.stdout)
        .trim()
        .parse()
        .expect("a uid");
    acl_search_for(etc, uid);
    let (_, out) = setup(&env, &yml, &env.config, &["--force"]);
    assert_setup_ok(&out);
    assert!(
        !out.contains("change  copy "),
        "copied despite the ACL:\n{out}"
    );
    let written = toml_of(&env.config);
    assert_eq!(written["gitlab"]["config_file"].as_str(), yml.to_str());

    // Open to the group nogroup only: setup copies, and says so without
    // advising to join it.
    fs::remove_dir_all(env.dir.join("gitlab-rails")).unwrap();
    let yml = omnibus(&env, &env.dir, |t| t);
    let etc = yml.parent().unwrap();
    std::os::unix::fs::chown(etc, Some(0), Some(65534)).expect("chgrp nogroup");
    chmod(etc, 0o750);
    let (_, out) = setup(&env, &yml, &env.config, &["--force"]);
    assert_setup_ok(&out);
    assert!(out.contains("cannot enter the directory"), "{out}");
    assert!(out.contains("change  copy "), "{out}");
    for wrong in ["usermod", "to the group", "-G "] {
        assert!(!out.contains(wrong), "advises {wrong:?}:\n{out}");
    }
    if out.contains("setfacl") {
        assert!(out.contains("package acl"), "{out}");
    }
}
