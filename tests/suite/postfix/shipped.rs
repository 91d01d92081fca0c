//! The Postfix configuration the project ships in postfix/, made usable by
//! the test with nothing changed but the domain and paths: the main.cf
//! fragment's settings, the master.cf `gitlab` pipe entry, the transport
//! table of each variant and the recipient-verify access table.
//!
//! The files are read as an administrator pastes them: the active lines;
//! for the optional recipient check, also the settings the fragment ships
//! commented out (then also the recipient lookup, asking the test's `serve`).

use super::harness::DOMAIN;
use super::mailgate::Env;
use std::fs;
use std::path::{Path, PathBuf};

/// The domain and paths as the shipped files spell them.
const SHIPPED_DOMAIN: &str = "incoming.example.com";
const SHIPPED_BIN: &str = "/usr/bin/gitlab-mailgate";
const SHIPPED_CONFIG: &str = "/etc/gitlab-mailgate/config.toml";
const SHIPPED_SOCKET: &str = "/run/gitlab-mailgate/lmtp.sock";
const SHIPPED_LMTP_ADDR: &str = "127.0.0.1:2424";
const SHIPPED_LOOKUP_ADDR: &str = "127.0.0.1:2425";
const SHIPPED_TRANSPORT_MAP: &str = "/etc/postfix/gitlab-mailgate-transport";
const SHIPPED_VERIFY_MAP: &str = "/etc/postfix/gitlab-mailgate-verify";

/// How Postfix hands mail to gitlab-mailgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The master.cf `gitlab` pipe entry running `gitlab-mailgate deliver`.
    Pipe,
    /// `lmtp:inet:` to `gitlab-mailgate serve`.
    LmtpInet,
    /// `lmtp:unix:` to `gitlab-mailgate serve`.
    LmtpUnix,
}

impl Variant {
    /// The shipped transport table for this variant.
    fn transport_file(self) -> &'static str {
        match self {
            Variant::Pipe => "transport.pipe",
            Variant::LmtpInet => "transport.lmtp-inet",
            Variant::LmtpUnix => "transport.lmtp-unix",
        }
    }
}

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("postfix")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the e2e tests use the shipped Postfix files)",
            path.display()
        )
    })
}

/// Where the test keeps the lookup tables the fragment names.
pub fn transport_map(env: &Env) -> PathBuf {
    env.dir.join("transport")
}

/// Where the test keeps the recipient-verify access table.
pub fn verify_map(env: &Env) -> PathBuf {
    env.dir.join("verify")
}

/// Replaces what differs between the shipped files and the test machine.
fn localize(text: &str, env: &Env) -> String {
    text.replace(SHIPPED_DOMAIN, DOMAIN)
        .replace(SHIPPED_CONFIG, &env.config.display().to_string())
        .replace(SHIPPED_SOCKET, &env.lmtp_socket.display().to_string())
        .replace(SHIPPED_LMTP_ADDR, &format!("127.0.0.1:{}", env.lmtp_port))
        .replace(
            SHIPPED_LOOKUP_ADDR,
            &format!("127.0.0.1:{}", env.lookup_port),
        )
        .replace(SHIPPED_BIN, &env.bin.display().to_string())
        .replace(
            SHIPPED_TRANSPORT_MAP,
            &transport_map(env).display().to_string(),
        )
        .replace(SHIPPED_VERIFY_MAP, &verify_map(env).display().to_string())
}

/// Logical lines of a Postfix file: comments and blank lines dropped,
/// continuation lines (leading whitespace) joined to their first line.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match lines.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => {
                last.push(' ');
                last.push_str(trimmed);
            }
            _ => lines.push(trimmed.to_string()),
        }
    }
    lines
}

/// The fragment with its commented-out settings switched on: `#name =`
/// lines and their `#` + indented continuation lines lose the `#`; prose
/// comments (`# text`) stay.
fn uncomment_settings(text: &str) -> String {
    let mut out = String::new();
    let mut in_setting = false;
    for line in text.lines() {
        let body = line.strip_prefix('#');
        let starts = body.is_some_and(|b| {
            b.split_once('=').is_some_and(|(name, _)| {
                let name = name.trim_end();
                !name.is_empty() && !name.contains(char::is_whitespace)
            })
        });
        let continues =
            in_setting && body.is_some_and(|b| b.starts_with("  ") || b.starts_with('\t'));
        in_setting = starts || continues;
        out.push_str(if in_setting {
            body.unwrap_or(line)
        } else {
            line
        });
        out.push('\n');
    }
    out
}

/// The main.cf fragment's `name = value` settings, localized; with
/// `optional`, also the commented-out ones (the recipient check).
pub fn main_cf(env: &Env, optional: bool) -> Vec<(String, String)> {
    let mut text = read("main.cf");
    if optional {
        text = uncomment_settings(&text);
    }
    let settings: Vec<(String, String)> = logical_lines(&localize(&text, env))
        .iter()
        .filter_map(|l| {
            let (name, value) = l.split_once('=')?;
            Some((name.trim().to_string(), value.trim().to_string()))
        })
        .collect();
    let value = |name: &str| {
        settings
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert!(
        value("relay_domains").is_some_and(|v| v.contains(DOMAIN)),
        "postfix/main.cf does not relay {DOMAIN}"
    );
    assert!(
        value("transport_maps")
            .is_some_and(|v| v.contains(&transport_map(env).display().to_string())),
        "postfix/main.cf does not use {SHIPPED_TRANSPORT_MAP} as transport_maps"
    );
    settings
}

/// The shipped master.cf's `gitlab` pipe entry, localized, with the test's
/// config file added to the command when the entry names none.
pub fn master_cf_pipe_entry(env: &Env) -> String {
    let entry = logical_lines(&read("master.cf"))
        .into_iter()
        .find(|l| l.starts_with("gitlab ") && l.contains(" pipe "))
        .expect("postfix/master.cf has no active `gitlab unix … pipe` entry");
    let mut entry = localize(&entry, env);
    if !entry.contains("--config") {
        entry = entry.replacen(
            " deliver ",
            &format!(" deliver --config {} ", env.config.display()),
            1,
        );
    }
    assert!(
        entry.contains(&env.bin.display().to_string()),
        "the pipe entry does not run {SHIPPED_BIN}: {entry}"
    );
    entry
}

/// The transport table for `variant`, localized, to be written at
/// [`transport_map`].
pub fn transport(variant: Variant, env: &Env) -> (PathBuf, String) {
    (
        transport_map(env),
        localize(&read(variant.transport_file()), env),
    )
}

/// The recipient-verify access table, localized, to be written at
/// [`verify_map`].
pub fn recipient_verify(env: &Env) -> (PathBuf, String) {
    (verify_map(env), localize(&read("recipient-verify"), env))
}
