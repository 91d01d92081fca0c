//! The way back from `setup --postfix`: setup records in a state file
//! (`/var/lib/gitlab-mailgate/setup-undo.toml`) what it changed in Postfix
//! — each main.cf parameter's value before (or that it was unset), each
//! master.cf entry before and after, each table file it wrote and what was
//! there — and whether it enabled gitlab-mailgate.socket; `setup --undo`
//! puts all of it back, so Postfix's configuration files are byte for
//! byte as before setup, runs `postfix check` and reloads. Without that,
//! removing the package leaves Postfix routing the incoming domains to a
//! dead socket, and their mail queues for days (issue 19 item 8).
//!
//! Only what still holds setup's value is put back: a parameter the admin
//! changed since is kept, reported, and left in the state file, so a later
//! `--undo` can finish the job. The main.cf values go back through
//! `postconf -e`/`-X`, which keep main.cf's lines as they were. master.cf
//! is the one file edited here by hand: `postconf -F` realigns the whole
//! entry's columns, so the entry's own text goes back (through `postconf
//! -F` only when the entry no longer reads as setup left it).
//!
//! The file is root's (0644 in a root-owned directory; not the service's
//! `StateDirectory`, which systemd would hand to the service user): its
//! values are fed to `postconf` as root.

use crate::admin::postfix_conf::{Change, Postfix};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Where setup keeps its record of the system's Postfix; the package
/// removes the directory on purge.
const STATE_FILE: &str = "/var/lib/gitlab-mailgate/setup-undo.toml";

/// The default record for the Postfix in `postfix_config` (`None`: the
/// system's): one per instance, so setting up one never mixes with another.
pub fn state_file(postfix_config: Option<&Path>) -> PathBuf {
    match postfix_config {
        None => PathBuf::from(STATE_FILE),
        Some(dir) => {
            let name: String = dir
                .to_string_lossy()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            Path::new(STATE_FILE).with_file_name(format!("setup-undo{name}.toml"))
        }
    }
}

const HEADER: &str = "# Written by `gitlab-mailgate setup`: what it changed, for \
                      `gitlab-mailgate setup --undo`. Do not edit.\n";

/// What setup changed.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// Postfix's configuration directory (`postconf -c`); none: the system's.
    postfix_config: Option<PathBuf>,
    /// Setup ran `systemctl enable --now gitlab-mailgate.socket`.
    #[serde(default)]
    systemd_socket: bool,
    #[serde(default)]
    main: Vec<Main>,
    #[serde(default)]
    master: Vec<Master>,
    #[serde(default)]
    file: Vec<File>,
}

/// A main.cf parameter: as main.cf had it (`None`: unset), as setup set it.
#[derive(Debug, Serialize, Deserialize)]
struct Main {
    name: String,
    old: Option<String>,
    new: String,
}

/// A master.cf field and its whole entry's text, before and after.
#[derive(Debug, Serialize, Deserialize)]
struct Master {
    field: String,
    old: String,
    new: String,
    old_entry: String,
    new_entry: String,
}

/// A table file setup wrote: what was there (`None`: nothing), and what it wrote.
#[derive(Debug, Serialize, Deserialize)]
struct File {
    path: PathBuf,
    old: Option<String>,
    new: String,
}

/// Setup's record while it changes things: saved after every change, so
/// a run that fails halfway can be undone as far as it got.
pub struct Journal {
    path: PathBuf,
    state: State,
}

/// What was there before a change, taken by [`Journal::before`].
pub struct Before {
    main: Option<String>,
    entry: String,
    file: Option<String>,
}

impl Journal {
    /// The record at `path` (empty when there is none) for Postfix `pf`.
    pub fn open(path: &Path, pf: &Postfix) -> Result<Journal, String> {
        let state = load(path)?.unwrap_or_default();
        if !state.is_empty() && state.postfix_config != pf.config_dir {
            return Err(format!(
                "{} records changes to another Postfix instance ({}): run \
                 `gitlab-mailgate setup --undo` first",
                path.display(),
                instance(&state.postfix_config)
            ));
        }
        let state = State {
            postfix_config: pf.config_dir.clone(),
            ..state
        };
        Ok(Journal {
            path: path.to_path_buf(),
            state,
        })
    }

    /// What `change` is about to replace.
    pub fn before(&self, pf: &Postfix, change: &Change) -> Result<Before, String> {
        let mut before = Before {
            main: None,
            entry: String::new(),
            file: None,
        };
        match change {
            Change::Main { name, .. } => before.main = pf.explicit(name)?,
            Change::Master { field, .. } => before.entry = master_entry(pf, field)?,
            Change::Table { path, .. } => before.file = std::fs::read_to_string(path).ok(),
        }
        Ok(before)
    }

    /// Records `change`, made over `before`, and saves the record. A
    /// second setup keeps the first one's "before".
    pub fn record(&mut self, pf: &Postfix, change: &Change, before: Before) -> Result<(), String> {
        let state = &mut self.state;
        match change {
            Change::Main { name, new, .. } => match state.main.iter_mut().find(|m| &m.name == name)
            {
                Some(m) => m.new.clone_from(new),
                None => state.main.push(Main {
                    name: name.clone(),
                    old: before.main,
                    new: new.clone(),
                }),
            },
            Change::Master { field, old, new } => {
                let new_entry = master_entry(pf, field)?;
                match state.master.iter_mut().find(|m| &m.field == field) {
                    Some(m) => (m.new, m.new_entry) = (new.clone(), new_entry),
                    None => state.master.push(Master {
                        field: field.clone(),
                        old: old.clone(),
                        new: new.clone(),
                        old_entry: before.entry,
                        new_entry,
                    }),
                }
            }
            Change::Table { path, text } => match state.file.iter_mut().find(|f| &f.path == path) {
                Some(f) => f.new.clone_from(text),
                None => state.file.push(File {
                    path: path.clone(),
                    old: before.file,
                    new: text.clone(),
                }),
            },
        }
        self.save()
    }

    /// Records that setup enabled gitlab-mailgate.socket.
    pub fn record_socket(&mut self) -> Result<(), String> {
        self.state.systemd_socket = true;
        self.save()
    }

    fn save(&self) -> Result<(), String> {
        save(&self.path, &self.state)
    }
}

impl State {
    fn is_empty(&self) -> bool {
        !self.systemd_socket
            && self.main.is_empty()
            && self.master.is_empty()
            && self.file.is_empty()
    }
}

fn instance(dir: &Option<PathBuf>) -> String {
    dir.as_ref()
        .map_or("the system's".into(), |d| d.display().to_string())
}

/// The state at `path`; `None` when there is no file.
fn load(path: &Path) -> Result<Option<State>, String> {
    if std::fs::symlink_metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        return Ok(None);
    }
    let (bytes, mode) = crate::file::read(path, crate::file::CONFIG_MAX)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if mode & 0o022 != 0 {
        return Err(format!(
            "{}: writable by others than its owner (mode {mode:o}); not used",
            path.display()
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8", path.display()))?;
    toml::from_str(&text)
        .map(Some)
        .map_err(|e| format!("{}: {}", path.display(), e.message()))
}

/// Writes `state` to `path` (0644 in a 0755 directory it makes), or
/// removes the file when there is nothing left to undo.
fn save(path: &Path, state: &State) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    if state.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(fail(e)),
            _ => Ok(()),
        };
    }
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(fail)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(fail)?;
        }
    }
    let text = toml::to_string(state).map_err(|e| format!("{}: {e}", path.display()))?;
    replace(path, &format!("{HEADER}{text}"), 0o644)
}

/// Writes `path` through a temporary file and rename(2), so it is never
/// half written.
fn replace(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.gitlab-mailgate-tmp"));
    std::fs::write(&tmp, text).map_err(fail)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// The text of the master.cf entry of `field` (`lmtp/unix/chroot`): its
/// line and the continuation lines after it; empty when there is none.
fn master_entry(pf: &Postfix, field: &str) -> Result<String, String> {
    let text = read_master(pf)?;
    Ok(entry_span(&text, field).map_or(String::new(), |(a, b)| text[a..b].to_string()))
}

fn master_path(pf: &Postfix) -> Result<PathBuf, String> {
    Ok(pf.dir()?.join("master.cf"))
}

fn read_master(pf: &Postfix) -> Result<String, String> {
    let path = master_path(pf)?;
    crate::file::read_text(&path, crate::file::CONFIG_MAX)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Where the entry of `field`'s service and type is in master.cf's `text`.
fn entry_span(text: &str, field: &str) -> Option<(usize, usize)> {
    let mut parts = field.split('/');
    let (service, kind) = (parts.next()?, parts.next()?);
    let mut start = None;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let continues = line.starts_with([' ', '\t']);
        match start {
            Some(s) if !continues => return Some((s, at)),
            None => {
                let mut words = line.split_whitespace();
                if !continues && words.next() == Some(service) && words.next() == Some(kind) {
                    start = Some(at);
                }
            }
            Some(_) => {}
        }
        at += line.len();
    }
    start.map(|s| (s, at))
}

mod run;
pub use run::undo;

#[cfg(test)]
mod tests;
