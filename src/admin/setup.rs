//! `gitlab-mailgate setup`: from GitLab's gitlab.yml to a working route in
//! one command. Edits the configuration file, changing only the settings
//! it owns (`config_text`) and keeping every other one; when those differ
//! in an existing file it shows them and changes them only with `--force`
//! (or in the packaged example). With `--postfix` it makes
//! Postfix route the incoming domains to gitlab-mailgate through `postconf`
//! and runs `postfix check`, enables `gitlab-mailgate.socket` and
//! `gitlab-mailgate.service` (for the recipient lookup) where systemd
//! runs, then runs `check`. Each step compares first and changes only what
//! differs, so a second run says "nothing changed"; `--dry-run` prints the
//! commands and changes nothing, and checks the configuration as it would
//! be (with GitLab's secret files where the copies would be). What it
//! changes in Postfix and systemd is recorded for `setup --undo` (`undo`).
//!
//! It never prints a secret: secret files are copied, never shown. What it
//! reads is bounded like every trusted file (`crate::file`).

use crate::access::{group_name, SERVICE_USER};
use crate::admin::check::{self, RouteOptions};
use crate::admin::postfix_conf::{self, Postfix, Wanted};
use crate::config::gitlab_yml::{GitlabYml, OMNIBUS_PATH, SOURCE_PATH};
use crate::config::Config;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod config_text;
mod diff;
mod undo;

pub use undo::state_file;

/// The unix socket of the packaged `gitlab-mailgate.socket`.
pub const DEFAULT_TARGET: &str = "lmtp:unix:/run/gitlab-mailgate/lmtp.sock";

/// Marks the packaged example: a file that still has it is edited
/// without `--force`.
const UNCONFIGURED_MARK: &str = "# CHANGE ME";

/// What setup is asked to do (from `setup`'s command line).
#[derive(Debug, Clone)]
pub struct Options {
    /// The configuration file to write.
    pub config_path: PathBuf,
    /// Which Postfix, and whether to configure it at all (`required`).
    pub route: RouteOptions,
    /// GitLab's gitlab.yml; `None`: Omnibus's, else a source install's.
    pub gitlab_config: Option<PathBuf>,
    /// The incoming domains to route; empty: those of the addresses.
    pub domains: Vec<String>,
    /// Where Postfix delivers (`lmtp:unix:…` or `lmtp:inet:…`).
    pub lmtp_target: String,
    /// Also `reject_unverified_recipient` for the incoming domains.
    pub verify_recipients: bool,
    /// Replace an existing configuration file that differs.
    pub force: bool,
    /// Print what would change and change nothing.
    pub dry_run: bool,
    /// Put back what earlier runs changed (recorded in `state_file`).
    pub undo: bool,
    /// Where setup records what it changed, for `undo`.
    pub state_file: PathBuf,
}

/// Runs setup, then `check`; the exit status is check's (or 1 when setup
/// itself failed).
pub fn run(args: &Options) -> ExitCode {
    if args.undo {
        return undo::undo(&args.state_file, args.dry_run);
    }
    let mut out = Steps {
        dry_run: args.dry_run,
        changes: 0,
    };
    if let Err(e) = setup(args, &mut out) {
        println!("FAIL  setup: {e}");
        return ExitCode::FAILURE;
    }
    match (out.changes, args.dry_run) {
        (0, _) => println!("setup: nothing changed"),
        (n, true) => println!("setup: dry run, {n} change(s) not made"),
        (n, false) => println!("setup: {n} change(s) made"),
    }
    if args.dry_run {
        return ExitCode::SUCCESS;
    }
    println!("--- gitlab-mailgate check");
    check::run(&args.config_path, &args.route)
}

/// Prints each step and counts the changes.
struct Steps {
    dry_run: bool,
    changes: usize,
}

impl Steps {
    /// Reports a change (made, or to be made in a dry run).
    fn change(&mut self, what: impl std::fmt::Display) {
        self.changes += 1;
        let verb = if self.dry_run { "would" } else { "change" };
        println!("{verb}  {what}");
    }
    fn same(&self, what: impl std::fmt::Display) {
        println!("same  {what}");
    }
}

fn setup(args: &Options, out: &mut Steps) -> Result<(), String> {
    let config_path = &args.config_path;
    let listen = match args.lmtp_target.strip_prefix("lmtp:inet:") {
        Some(addr) => Some(addr.replace(['[', ']'], "")),
        None if args.lmtp_target.starts_with("lmtp:unix:") => None,
        None => {
            return Err(format!(
                "--lmtp-target {}: use lmtp:unix:/PATH or lmtp:inet:HOST:PORT",
                args.lmtp_target
            ))
        }
    };

    let yml_path = args.gitlab_config.clone().or_else(|| {
        [OMNIBUS_PATH, SOURCE_PATH]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    });
    let in_effect = match &yml_path {
        Some(path) => {
            let yml = GitlabYml::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let active: Vec<_> = yml.mailboxes.iter().filter(|m| m.active()).collect();
            if active.is_empty() {
                return Err(format!(
                    "{}: neither incoming_email nor service_desk_email is enabled with an \
                     address: enable one in GitLab first (gitlab.rb: \
                     gitlab_rails['incoming_email_enabled'] = true and _address)",
                    path.display()
                ));
            }
            if let Some(why) = active.iter().find_map(|m| m.refusal()) {
                return Err(format!("{}: {why}", path.display()));
            }
            let lookup = args.route.required.then_some(crate::lookup::DEFAULT_LISTEN);
            write_config(args, out, &yml, (listen.as_deref(), lookup))?
        }
        None if config_path.exists() => None,
        None => {
            return Err(format!(
                "found no GitLab configuration ({OMNIBUS_PATH} or {SOURCE_PATH}): pass \
                 --gitlab-config FILE (on a mail host apart from GitLab, a copy of GitLab's \
                 gitlab.yml and secret files; see the README)"
            ))
        }
    };

    // The domains to route: those of the configuration as it will be (in
    // a dry run, with GitLab's secrets where the copies would be).
    let config = match (&in_effect, args.dry_run) {
        (Some(t), true) => Config::parse(config_path, t),
        _ => Config::load(config_path),
    }
    .map_err(|e| e.to_string())?;
    if args.route.required {
        let mut domains = args.domains.clone();
        if domains.is_empty() {
            for m in &config.mailboxes {
                let d = m.template.domain().to_ascii_lowercase();
                if !domains.contains(&d) {
                    domains.push(d);
                }
            }
        }
        let lookup = config
            .lookup
            .listen
            .map(|a| crate::lookup::postfix_table(&a.to_string()));
        postfix(args, out, domains, lookup)?;
    }
    if args.lmtp_target == DEFAULT_TARGET && Path::new("/run/systemd/system").exists() {
        systemd(args, out)?;
    }
    Ok(())
}

/// Copies the secrets and edits the configuration file as setup would
/// have them; returns the text a dry run checks instead of the file.
fn write_config(
    args: &Options,
    out: &mut Steps,
    yml: &GitlabYml,
    (listen, lookup): (Option<&str>, Option<&str>),
) -> Result<Option<String>, String> {
    let path = &args.config_path;
    let old = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        _ => Some(
            crate::file::read_text(path, crate::file::CONFIG_MAX)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        ),
    };
    let planned = match old
        .as_deref()
        .map(|o| config_text::plan(path, Some(o), yml, listen, lookup))
    {
        None => config_text::plan(path, None, yml, listen, lookup)?,
        Some(Ok(planned)) => planned,
        Some(Err(e)) if args.force => {
            println!("note  {}: {e}; --force replaces it", path.display());
            config_text::plan(path, None, yml, listen, lookup)?
        }
        Some(Err(e)) => {
            return Err(format!(
                "{}: {e}; fix it, or --force replaces it with a new one",
                path.display()
            ))
        }
    };
    if let Some(why) = &planned.blocked {
        println!(
            "note  {}: setup copies GitLab's secret files (to let it read them in place \
             instead: {})",
            why.what, why.acl
        );
    }
    for copy in &planned.copies {
        copy_secret(out, &copy.from, &copy.to)?;
    }
    let old_text = old.as_deref().unwrap_or_default();
    if old.as_deref() == Some(planned.text.as_str()) {
        out.same(format_args!("{}", path.display()));
        return Ok(args.dry_run.then_some(planned.as_if_copied));
    }
    let mut lines = diff::settings(old_text, &planned.text);
    if lines.is_empty() {
        lines.push("(the same settings; comments and layout only)".into());
    }
    let replace = old.is_none() || args.force || old_text.contains(UNCONFIGURED_MARK);
    if !replace {
        println!(
            "keep  {} differs in settings setup owns (--force changes them, keeping \
             all others):",
            path.display()
        );
        for l in lines {
            println!("        {l}");
        }
        return Ok(old);
    }
    out.change(format_args!("write {}:", path.display()));
    for l in lines {
        println!("        {l}");
    }
    if args.dry_run {
        return Ok(Some(planned.as_if_copied));
    }
    write_private(path, planned.text.as_bytes())?;
    Ok(None)
}

fn copy_secret(out: &mut Steps, from: &Path, to: &Path) -> Result<(), String> {
    use crate::file::{read, SECRET_MAX};
    let (data, _) =
        read(from, SECRET_MAX).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    if read(to, SECRET_MAX).ok().map(|(d, _)| d) == Some(data.clone()) {
        out.same(format_args!(
            "{} (copy of {})",
            to.display(),
            from.display()
        ));
        return Ok(());
    }
    out.change(format_args!(
        "copy {} to {} (root:{SERVICE_USER} 0640)",
        from.display(),
        to.display()
    ));
    if !out.dry_run {
        write_private(to, &data)?;
    }
    Ok(())
}

/// Writes `path` as root:gitlab-mailgate 0640 (the group when it exists).
fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    std::fs::write(path, data).map_err(fail)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640)).map_err(fail)?;
    if let Some(user) = crate::access::User::lookup(SERVICE_USER) {
        if group_name(user.gid) == SERVICE_USER {
            chown(path, Some(0), Some(user.gid)).map_err(fail)?;
        }
    }
    Ok(())
}

fn postfix(
    args: &Options,
    out: &mut Steps,
    domains: Vec<String>,
    lookup: Option<String>,
) -> Result<(), String> {
    if !Postfix::installed() {
        return Err("Postfix is not installed (apt install postfix)".into());
    }
    let pf = Postfix {
        config_dir: args.route.postfix_config.clone(),
    };
    let wanted = Wanted {
        domains,
        target: args.lmtp_target.clone(),
        verify_recipients: args.verify_recipients,
        lookup,
    };
    let changes = postfix_conf::plan(&pf, &wanted)?;
    if changes.is_empty() {
        out.same(format_args!(
            "Postfix routes {} to {}",
            wanted.domains.join(", "),
            wanted.target
        ));
        return Ok(());
    }
    let mut journal = match args.dry_run {
        true => None,
        false => Some(undo::Journal::open(&args.state_file, &pf)?),
    };
    for change in &changes {
        out.change(pf.describe(change));
        if let Some(journal) = &mut journal {
            let before = journal.before(&pf, change)?;
            pf.apply(change)?;
            journal.record(&pf, change, before)?;
        }
    }
    if !args.dry_run {
        let reloaded = pf.check_and_reload()?;
        println!(
            "ok    {}{}",
            pf.command("postfix", &["check"]),
            if reloaded { ", postfix reload" } else { "" }
        );
    }
    Ok(())
}

/// Enables and starts the socket unit, and the service too: it answers
/// the recipient lookup, which Postfix asks before any message reaches
/// the socket, so it cannot wait for socket activation (the service gets
/// the socket's descriptor all the same). `setup --undo` disables both.
fn systemd(args: &Options, out: &mut Steps) -> Result<(), String> {
    let mut enabled = false;
    for unit in ["gitlab-mailgate.socket", "gitlab-mailgate.service"] {
        enabled |= enable(out, unit)?;
    }
    if !enabled {
        return Ok(());
    }
    let pf = Postfix {
        config_dir: args.route.postfix_config.clone(),
    };
    undo::Journal::open(&args.state_file, &pf)?.record_socket()
}

/// Enables and starts `unit` unless it is already; whether it did.
fn enable(out: &mut Steps, unit: &str) -> Result<bool, String> {
    let state = |verb: &str| {
        Command::new("systemctl")
            .args([verb, "--quiet", unit])
            .status()
            .is_ok_and(|s| s.success())
    };
    if state("is-enabled") && state("is-active") {
        out.same(format_args!("{unit} enabled and active"));
        return Ok(false);
    }
    out.change(format_args!("systemctl enable --now {unit}"));
    if out.dry_run {
        return Ok(false);
    }
    let status = Command::new("systemctl")
        .args(["enable", "--now", unit])
        .status()
        .map_err(|e| format!("cannot run systemctl: {e}"))?;
    if !status.success() {
        return Err(format!("systemctl enable --now {unit} failed ({status})"));
    }
    Ok(true)
}
