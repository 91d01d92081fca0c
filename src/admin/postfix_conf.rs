//! Postfix's configuration as `setup` changes it and `check` reads it, only
//! through Postfix's own tools: `postconf` (main.cf and master.cf are never
//! rewritten by hand), `postmap -q`, `postfix check`.
//!
//! [`plan`] compares what is there with what gitlab-mailgate needs and
//! returns the [`Change`]s, so a dry run can print exactly the commands a
//! real run would execute, and a second run finds nothing to do.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the Postfix tools are (Debian).
const SBIN: &str = "/usr/sbin";

/// The transport and access tables setup writes, in Postfix's config directory.
pub const TRANSPORT_TABLE: &str = "gitlab-mailgate-transport";
/// The access table for the optional recipient check.
pub const VERIFY_TABLE: &str = "gitlab-mailgate-verify";

/// One Postfix instance: the system's, or the one in a config directory.
#[derive(Debug, Clone, Default)]
pub struct Postfix {
    /// `-c DIR`, when not the default instance.
    pub config_dir: Option<PathBuf>,
}

/// What gitlab-mailgate needs from Postfix.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// The incoming domains.
    pub domains: Vec<String>,
    /// The transport for them, e.g. `lmtp:unix:/run/gitlab-mailgate/lmtp.sock`.
    pub target: String,
    /// Also refuse unknown recipients during the SMTP dialogue.
    pub verify_recipients: bool,
    /// The recipient lookup for `relay_recipient_maps`, e.g.
    /// `socketmap:inet:127.0.0.1:2425:gitlab` (see `crate::lookup`).
    pub lookup: Option<String>,
}

/// One change to Postfix's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A main.cf parameter (`postconf -e`).
    Main {
        name: String,
        old: String,
        new: String,
    },
    /// A master.cf field such as `lmtp/unix/chroot` (`postconf -F`).
    Master {
        field: String,
        old: String,
        new: String,
    },
    /// A lookup table of ours, written whole.
    Table { path: PathBuf, text: String },
}

impl Postfix {
    /// Whether Postfix is installed here.
    pub fn installed() -> bool {
        Path::new(SBIN).join("postconf").exists()
    }

    fn tool(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(Path::new(SBIN).join(program));
        if let Some(dir) = &self.config_dir {
            cmd.arg("-c").arg(dir);
        }
        let out = cmd
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
        } else {
            Err(format!(
                "{} failed: {}",
                self.command(program, args),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The command line `program args` for this instance, as printed.
    pub fn command(&self, program: &str, args: &[&str]) -> String {
        let mut line = program.to_string();
        if let Some(dir) = &self.config_dir {
            line.push_str(&format!(" -c {}", dir.display()));
        }
        for a in args {
            if a.contains([' ', ',', '{', '$']) {
                line.push_str(&format!(" '{a}'"));
            } else {
                line.push_str(&format!(" {a}"));
            }
        }
        line
    }

    /// A main.cf parameter's value with `$name`s expanded (`postconf -hx`).
    pub fn get(&self, name: &str) -> Result<String, String> {
        self.tool("postconf", &["-hx", name])
    }

    /// A main.cf parameter's value as written in main.cf, `$name`s kept;
    /// the expanded default when main.cf does not set it.
    pub fn get_set(&self, name: &str) -> Result<String, String> {
        match self.tool("postconf", &["-nh", name])? {
            v if v.is_empty() => self.get(name),
            v => Ok(v),
        }
    }

    /// A main.cf parameter as main.cf sets it (`$name`s kept); `None` when
    /// main.cf does not set it (`postconf -n`).
    pub fn explicit(&self, name: &str) -> Result<Option<String>, String> {
        let line = self.tool("postconf", &["-n", name])?;
        Ok(match line.split_once(" = ") {
            Some((_, value)) => Some(value.to_string()),
            None => (!line.is_empty()).then(String::new),
        })
    }

    /// Sets main.cf parameter `name` (`postconf -e`), or removes it
    /// (`postconf -X`) for `None`.
    pub fn set_main(&self, name: &str, value: Option<&str>) -> Result<(), String> {
        match value {
            Some(v) => self.tool("postconf", &["-e", &format!("{name}={v}")]),
            None => self.tool("postconf", &["-X", name]),
        }
        .map(drop)
    }

    /// Sets a master.cf field such as `lmtp/unix/chroot` (`postconf -F`).
    pub fn set_master_field(&self, field: &str, value: &str) -> Result<(), String> {
        self.tool("postconf", &["-F", &format!("{field}={value}")])
            .map(drop)
    }

    /// A master.cf field's value, e.g. `lmtp/unix/chroot` (`postconf -Fh`).
    pub fn master_field(&self, field: &str) -> Result<String, String> {
        self.tool("postconf", &["-Fh", field])
    }

    /// master.cf's services, one per line (`postconf -M`).
    pub fn master_services(&self) -> Result<String, String> {
        self.tool("postconf", &["-M"])
    }

    /// Postfix's configuration directory.
    pub fn dir(&self) -> Result<PathBuf, String> {
        match &self.config_dir {
            Some(d) => Ok(d.clone()),
            None => self.get("config_directory").map(PathBuf::from),
        }
    }

    /// What `domain` is routed to by `transport_maps` (`postmap -q`), if anything.
    pub fn transport_of(&self, domain: &str) -> Result<Option<String>, String> {
        for map in list(&self.get("transport_maps")?) {
            if let Ok(hit) = self.tool("postmap", &["-q", domain, &map]) {
                if !hit.is_empty() {
                    return Ok(Some(hit));
                }
            }
        }
        Ok(None)
    }

    /// Whether lmtp(8) runs chrooted (master.cf `lmtp/unix/chroot`; `-`
    /// means no since Postfix 3.0).
    pub fn lmtp_chrooted(&self) -> Result<bool, String> {
        Ok(self.master_field("lmtp/unix/chroot")? == "y")
    }

    /// The printable command that makes `change`.
    pub fn describe(&self, change: &Change) -> String {
        match change {
            Change::Main { name, new, .. } => {
                self.command("postconf", &["-e", &format!("{name}={new}")])
            }
            Change::Master { field, new, .. } => {
                self.command("postconf", &["-F", &format!("{field}={new}")])
            }
            Change::Table { path, text } => format!(
                "write {} ({})",
                path.display(),
                text.lines()
                    .filter(|l| !l.starts_with('#'))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }
    }

    /// Makes `change`.
    pub fn apply(&self, change: &Change) -> Result<(), String> {
        match change {
            Change::Main { name, new, .. } => self
                .tool("postconf", &["-e", &format!("{name}={new}")])
                .map(drop),
            Change::Master { field, new, .. } => self
                .tool("postconf", &["-F", &format!("{field}={new}")])
                .map(drop),
            Change::Table { path, text } => std::fs::write(path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display())),
        }
    }

    /// `postfix check`, then `postfix reload` when the instance runs.
    pub fn check_and_reload(&self) -> Result<bool, String> {
        self.tool("postfix", &["check"])?;
        let running = self.tool("postfix", &["status"]).is_ok();
        if running {
            self.tool("postfix", &["reload"])?;
        }
        Ok(running)
    }
}

/// The changes that make Postfix route `wanted.domains` to gitlab-mailgate;
/// empty when it already does.
pub fn plan(pf: &Postfix, wanted: &Wanted) -> Result<Vec<Change>, String> {
    let dir = pf.dir()?;
    let mut changes = Vec::new();

    let transport = dir.join(TRANSPORT_TABLE);
    let mut text = String::from(
        "# Written by `gitlab-mailgate setup`: GitLab's incoming domains go to gitlab-mailgate.\n",
    );
    for d in &wanted.domains {
        text.push_str(&format!("{d}\t{}\n", wanted.target));
    }
    table(&mut changes, transport.clone(), text);
    prepend(
        pf,
        &mut changes,
        "transport_maps",
        &format!("texthash:{}", transport.display()),
    )?;

    let relay = pf.get_set("relay_domains")?;
    let have = list(&pf.get("relay_domains")?);
    let missing: Vec<&String> = wanted
        .domains
        .iter()
        .filter(|d| !have.iter().any(|h| h.eq_ignore_ascii_case(d)))
        .collect();
    if !missing.is_empty() {
        let mut all: Vec<String> = list(&relay);
        all.extend(missing.into_iter().cloned());
        main(&mut changes, "relay_domains", relay, all.join(", "));
    }

    // Debian's lmtp runs chrooted in the queue directory, where a socket in
    // /run does not exist: such a target needs lmtp out of the chroot.
    if let Some(path) = wanted.target.strip_prefix("lmtp:unix:") {
        let queue = pf.get("queue_directory")?;
        if path.starts_with('/') && !Path::new(path).starts_with(&queue) {
            let old = pf.master_field("lmtp/unix/chroot")?;
            if old == "y" {
                changes.push(Change::Master {
                    field: "lmtp/unix/chroot".into(),
                    old,
                    new: "n".into(),
                });
            }
        }
    }

    // Postfix's lmtp client then names its queue id (XFORWARD IDENT),
    // which leads gitlab-mailgate's log lines of the message. Postfix
    // sends XFORWARD only to a server that offers it, so other LMTP
    // servers (Dovecot's) are not affected.
    if wanted.target.starts_with("lmtp:") {
        let old = pf.get("lmtp_send_xforward_command")?;
        if old != "yes" {
            main(
                &mut changes,
                "lmtp_send_xforward_command",
                old,
                "yes".into(),
            );
        }
    }
    if let Some(table) = &wanted.lookup {
        recipient_lookup(pf, &mut changes, wanted, &have, table)?;
    }

    if wanted.verify_recipients {
        let verify = dir.join(VERIFY_TABLE);
        let mut text = String::from(
            "# Written by `gitlab-mailgate setup`: probe GitLab's recipients before accepting mail.\n",
        );
        for d in &wanted.domains {
            text.push_str(&format!("{d}\treject_unverified_recipient\n"));
        }
        table(&mut changes, verify.clone(), text);
        let check = format!("check_recipient_access texthash:{}", verify.display());
        prepend(pf, &mut changes, "smtpd_recipient_restrictions", &check)?;
        let code = pf.get("unverified_recipient_reject_code")?;
        if code != "550" {
            main(
                &mut changes,
                "unverified_recipient_reject_code",
                code,
                "550".into(),
            );
        }
    }
    Ok(changes)
}

/// Puts the recipient lookup first in `relay_recipient_maps`. That
/// parameter applies to every relay domain, and the lookup answers only
/// for GitLab's: where it is empty and `relay_domains` (`have`) lists
/// other domains, whose every address Postfix takes now, setting it would
/// refuse their mail; setup stops and says what to do instead.
fn recipient_lookup(
    pf: &Postfix,
    changes: &mut Vec<Change>,
    wanted: &Wanted,
    have: &[String],
    table: &str,
) -> Result<(), String> {
    let local = list(&pf.get("mydestination")?);
    let others: Vec<&String> = have
        .iter()
        .filter(|h| !wanted.domains.iter().any(|d| d.eq_ignore_ascii_case(h)))
        .filter(|h| !local.iter().any(|l| l.eq_ignore_ascii_case(h)))
        .collect();
    if !others.is_empty() && pf.get("relay_recipient_maps")?.trim().is_empty() {
        let others: Vec<&str> = others.iter().map(|s| s.as_str()).collect();
        return Err(format!(
            "relay_domains also lists {}, and relay_recipient_maps is empty: Postfix \
             takes any address there. The recipient lookup setup adds to \
             relay_recipient_maps would refuse them all. List their valid addresses (or \
             @domain for all) in a table in relay_recipient_maps first (README: \
             \"Refusing unknown addresses during SMTP\"), then run setup again",
            others.join(", ")
        ));
    }
    prepend(pf, changes, "relay_recipient_maps", table)
}

fn main(changes: &mut Vec<Change>, name: &str, old: String, new: String) {
    changes.push(Change::Main {
        name: name.into(),
        old,
        new,
    });
}

fn table(changes: &mut Vec<Change>, path: PathBuf, text: String) {
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        changes.push(Change::Table { path, text });
    }
}

/// Puts `entry` first in list parameter `name` unless it is in it already.
fn prepend(pf: &Postfix, changes: &mut Vec<Change>, name: &str, entry: &str) -> Result<(), String> {
    let old = pf.get_set(name)?;
    if !pf.get(name)?.contains(entry) {
        let new = if old.trim().is_empty() {
            entry.to_string()
        } else {
            format!("{entry}, {old}")
        };
        main(changes, name, old, new);
    }
    Ok(())
}

/// The elements of a Postfix list value (comma or space separated).
pub fn list(value: &str) -> Vec<String> {
    value
        .split([',', ' ', '\t', '\n'])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}
