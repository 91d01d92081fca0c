//! The configuration file `setup` writes, as an edit of the one in place:
//! setup sets the settings it owns and keeps every other setting and
//! comment the admin wrote (`toml_edit`, which also quotes every value).
//!
//! Setup owns `[gitlab] config_file`, `url` and `host`, and each
//! mailbox's `address` and `secret_file`; delivering over TCP, it adds its
//! address to `[lmtp] listen`; with `--postfix` it sets `[lookup] listen`
//! (the recipient lookup Postfix asks at `RCPT`) unless the file has one.
//! Where the service user can read GitLab's gitlab.yml and secret files,
//! setup only points at them (`config_file`, and removes the owned settings
//! that would shadow GitLab's), so a change in GitLab needs no change here.
//! Where it cannot (Omnibus keeps them in `/var/opt/gitlab/gitlab-rails/etc`,
//! mode 0700 for the user git), it writes what it read and copies the
//! secrets next to the configuration, root:gitlab-mailgate 0640.

use crate::access::{Denied, Need, User, SERVICE_USER};
use crate::config::gitlab_yml::GitlabYml;
use crate::mailbox::MailboxKind as Kind;
use std::path::{Path, PathBuf};
use toml_edit::{DocumentMut, Item, Table, Value};

/// Where the commented reference configuration is installed (Cargo.toml's
/// package assets put packaging/config.toml there).
pub const EXAMPLE: &str = "/usr/share/doc/gitlab-mailgate/examples/config.toml";

/// A secret file to copy: from GitLab's, to ours.
#[derive(Debug, Clone)]
pub struct Copy {
    /// The mailbox.
    pub kind: Kind,
    /// GitLab's secret file.
    pub from: PathBuf,
    /// Ours, beside the configuration file.
    pub to: PathBuf,
}

/// The configuration as setup leaves it.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The file's text.
    pub text: String,
    /// The same, its copied `secret_file`s naming GitLab's files: what a
    /// dry run checks, having copied nothing (issue 18.10).
    pub as_if_copied: String,
    /// The secrets to copy.
    pub copies: Vec<Copy>,
    /// Why the service user cannot read GitLab's files (then setup copies).
    pub blocked: Option<Denied>,
}

/// Edits `old` (the file in place; `None`: none, or one to replace) so it
/// serves the mailboxes of `yml`, delivering on `listen` when given, and
/// answering the recipient lookup on `lookup` when given.
pub fn plan(
    config: &Path,
    old: Option<&str>,
    yml: &GitlabYml,
    listen: Option<&str>,
    lookup: Option<&str>,
) -> Result<Planned, String> {
    let active = yml.mailboxes.iter().filter(|m| m.active());
    let blocked = User::lookup(SERVICE_USER).and_then(|user| {
        std::iter::once(yml.path.as_path())
            .chain(active.map(|m| m.secret_file.as_path()))
            .find_map(|p| user.denied(p, Need::Read))
    });
    edit(config, old, yml, (listen, lookup), blocked)
}

/// [`plan`], once it is known whether the service user is `blocked` from
/// GitLab's files.
fn edit(
    config: &Path,
    old: Option<&str>,
    yml: &GitlabYml,
    (listen, lookup): (Option<&str>, Option<&str>),
    blocked: Option<Denied>,
) -> Result<Planned, String> {
    let mut doc = match old {
        Some(text) => text
            .parse::<DocumentMut>()
            .map_err(|e| format!("not valid TOML: {}", e.message()))?,
        None => DocumentMut::new(),
    };
    let active: Vec<_> = yml.mailboxes.iter().filter(|m| m.active()).collect();
    let yml_path = utf8(&yml.path)?;
    let mut copies = Vec::new();
    let gitlab = section(&mut doc, "gitlab")?;
    match &blocked {
        None => {
            set(
                gitlab,
                "config_file",
                yml_path.into(),
                "# GitLab's addresses, secret files and URL are read from here at every\n\
                 # start; a setting given in this file wins over GitLab's.\n",
            );
            gitlab.remove("url");
            gitlab.remove("host");
        }
        Some(_) => {
            let url = active
                .iter()
                .find_map(|m| m.gitlab_url.clone())
                .unwrap_or_else(|| yml.external_url.clone());
            gitlab.remove("config_file");
            let why = format!(
                "# Read from {} by setup: the user {SERVICE_USER} cannot read it.\n\
                 # Run `gitlab-mailgate setup` again after changing GitLab's e-mail settings.\n",
                comment(yml_path)
            );
            set(gitlab, "url", url.into(), &why);
            set(gitlab, "host", yml.host.as_str().into(), "");
        }
    }
    let dir = config.parent().unwrap_or(Path::new("/etc/gitlab-mailgate"));
    for kind in [Kind::Incoming, Kind::ServiceDesk] {
        let name = kind.name();
        let theirs = active.iter().find(|m| m.kind == kind);
        match (theirs, &blocked) {
            (Some(m), Some(_)) => {
                let to = dir.join(format!("{name}_secret"));
                let table = section(&mut doc, name)?;
                let address = m.address.as_deref().unwrap_or_default();
                set(table, "address", address.into(), "");
                set(table, "secret_file", utf8(&to)?.into(), "");
                copies.push(Copy {
                    kind,
                    from: m.secret_file.clone(),
                    to,
                });
            }
            _ => {
                let Some(table) = doc.get_mut(name).and_then(Item::as_table_mut) else {
                    continue;
                };
                table.remove("address");
                table.remove("secret_file");
                // An empty section of a mailbox GitLab does not serve
                // would ask GitLab for an address it does not have.
                if theirs.is_none() && table.is_empty() {
                    doc.remove(name);
                }
            }
        }
    }
    if let Some(addr) = listen {
        let lmtp = section(&mut doc, "lmtp")?;
        let listed = lmtp.get_mut("listen").and_then(Item::as_array_mut);
        match listed {
            // The admin's other listeners (a unix socket, say) stay.
            Some(list) if list.iter().any(|v| v.as_str() == Some(addr)) => {}
            Some(list) if list.iter().all(|v| v.is_str()) => list.push(addr),
            _ => {
                let list: toml_edit::Array = [addr].into_iter().collect();
                set(
                    lmtp,
                    "listen",
                    list.into(),
                    "# Where Postfix delivers (setup --lmtp-target).\n",
                );
            }
        }
    }
    if let Some(addr) = lookup {
        let table = section(&mut doc, "lookup")?;
        // The admin's own address stays: setup points Postfix at it.
        if !table.contains_key("listen") {
            set(
                table,
                "listen",
                addr.into(),
                "# The recipient lookup Postfix asks at RCPT (relay_recipient_maps).\n",
            );
        }
    }
    if old.is_none() {
        if let Some(first) = doc.iter_mut().next().and_then(|(_, i)| i.as_table_mut()) {
            first.decor_mut().set_prefix(format!(
                "# gitlab-mailgate configuration, written by `gitlab-mailgate setup`.\n\
                 # Any setting of the commented example {EXAMPLE}\n\
                 # may be added: setup changes only the settings it owns (see the README)\n\
                 # and keeps the others.\n\n"
            ));
        }
    }
    let text = doc.to_string();
    for copy in &copies {
        let table = section(&mut doc, copy.kind.name())?;
        set(table, "secret_file", utf8(&copy.from)?.into(), "");
    }
    Ok(Planned {
        text,
        as_if_copied: doc.to_string(),
        copies,
        blocked,
    })
}

/// The table `[name]`, made when missing.
fn section<'a>(doc: &'a mut DocumentMut, name: &str) -> Result<&'a mut Table, String> {
    let first = doc.is_empty();
    let item = doc.entry(name).or_insert_with(|| {
        let mut table = Table::new();
        if !first {
            table.decor_mut().set_prefix("\n");
        }
        Item::Table(table)
    });
    item.as_table_mut().ok_or_else(|| {
        format!(
            "`{name}` is not a [{name}] section: setup cannot edit it (--force replaces the file)"
        )
    })
}

/// Sets `key` to `value`, keeping the key's place and comments; a new key
/// gets `comment` above it. An equal value is left as written.
fn set(table: &mut Table, key: &str, value: Value, comment: &str) {
    if let Some(item) = table.get_mut(key) {
        let same = match (item.as_value(), &value) {
            (Some(Value::String(a)), Value::String(b)) => a.value() == b.value(),
            (Some(Value::Array(a)), Value::Array(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b.iter())
                        .all(|(x, y)| x.as_str() == y.as_str())
            }
            _ => false,
        };
        if !same {
            // The value's own comment goes with it (the packaged
            // example's `# CHANGE ME`).
            *item = Item::Value(value);
        }
        return;
    }
    table.insert(key, Item::Value(value));
    if let (false, Some(mut k)) = (comment.is_empty(), table.key_mut(key)) {
        k.leaf_decor_mut().set_prefix(comment);
    }
}

fn utf8(path: &Path) -> Result<&str, String> {
    path.to_str()
        .ok_or_else(|| format!("{}: the path is not UTF-8", path.display()))
}

/// `text` fit for a comment line: no line break may end the comment early.
fn comment(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests;
