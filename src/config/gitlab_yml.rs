//! GitLab's own `gitlab.yml` (its `production:` section), read for the few
//! settings gitlab-mailgate would otherwise repeat: the two mailboxes'
//! addresses, enabled flags, secret and public key files, and the URL
//! mail_room posts to.
//!
//! It reads; it does not decide. [`Mailbox::refusal`] says why a mailbox as
//! GitLab configures it cannot work with gitlab-mailgate (and how to fix
//! it); the configuration loader decides what to do with that.
//!
//! YAML: `saphyr` (pure Rust, YAML 1.2). GitLab reads the file with Ruby's
//! Psych (YAML 1.1), so the enabled flags also accept 1.1's `yes`/`on`.

use crate::mailbox::MailboxKind as Kind;
use saphyr::{LoadableYamlNode, Yaml};
use std::path::{Path, PathBuf};

/// Omnibus GitLab's rendered configuration.
pub const OMNIBUS_PATH: &str = "/var/opt/gitlab/gitlab-rails/etc/gitlab.yml";
/// A source installation's configuration.
pub const SOURCE_PATH: &str = "/home/git/gitlab/config/gitlab.yml";

/// GitLab's settings that matter to gitlab-mailgate.
#[derive(Debug, Clone)]
pub struct GitlabYml {
    /// The file read.
    pub path: PathBuf,
    /// `gitlab.host`: GitLab's external host name.
    pub host: String,
    /// GitLab's external URL, from `gitlab.host`, `port`, `https` and
    /// `relative_url_root`.
    pub external_url: String,
    /// `incoming_email` and `service_desk_email`, when the file has them.
    pub mailboxes: Vec<Mailbox>,
}

/// One mailbox section of `gitlab.yml`.
#[derive(Debug, Clone)]
pub struct Mailbox {
    /// Which one.
    pub kind: Kind,
    /// `enabled` (GitLab also needs a non-empty address).
    pub enabled: bool,
    /// `address`, the template with `%{key}`.
    pub address: Option<String>,
    /// `delivery_method`; GitLab's default is `sidekiq`.
    pub delivery_method: String,
    /// `gitlab_url`: where mail_room posts (webhook delivery).
    pub gitlab_url: Option<String>,
    /// `secret_file`, made absolute the way GitLab resolves it.
    pub secret_file: PathBuf,
    /// `public_key_files` (ES256), made absolute.
    pub public_key_files: Vec<PathBuf>,
    /// `host` of an IMAP server, when one is configured.
    pub imap_host: Option<String>,
    /// `inbox_method`, when not IMAP (`microsoft_graph`).
    pub inbox_method: Option<String>,
}

impl GitlabYml {
    /// Reads and interprets `path`. The error says what is wrong and where.
    pub fn load(path: &Path) -> Result<GitlabYml, String> {
        let text = crate::file::read_text(path, crate::file::GITLAB_YML_MAX)
            .map_err(|e| format!("cannot read GitLab's configuration: {e}"))?;
        GitlabYml::parse(path, &text)
    }

    /// Interprets the text of a `gitlab.yml` read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<GitlabYml, String> {
        let docs = Yaml::load_from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
        let production = docs
            .first()
            .and_then(|d| d.as_mapping_get("production"))
            .filter(|p| p.is_mapping())
            .ok_or("no `production:` section (is this GitLab's gitlab.yml?)")?;
        let gitlab = production.as_mapping_get("gitlab");
        let field = |key: &str| gitlab.and_then(|g| scalar(g.as_mapping_get(key)?));
        let host = field("host").unwrap_or_else(|| "localhost".into());
        let https = gitlab
            .and_then(|g| g.as_mapping_get("https"))
            .is_some_and(truthy);
        let port = field("port");
        let default_port = if https { "443" } else { "80" };
        let port = match port.as_deref() {
            None | Some("") => String::new(),
            Some(p) if p == default_port => String::new(),
            Some(p) => format!(":{p}"),
        };
        let root = field("relative_url_root").unwrap_or_default();
        let scheme = if https { "https" } else { "http" };
        let external_url = format!("{scheme}://{host}{port}{}", root.trim_end_matches('/'));

        let mut mailboxes = Vec::new();
        for kind in [Kind::Incoming, Kind::ServiceDesk] {
            if let Some(section) = production.as_mapping_get(kind.name()) {
                mailboxes.push(Mailbox::read(path, kind, section));
            }
        }
        Ok(GitlabYml {
            path: path.to_path_buf(),
            host,
            external_url,
            mailboxes,
        })
    }

    /// The section for `kind`, if the file has one.
    pub fn mailbox(&self, kind: Kind) -> Option<&Mailbox> {
        self.mailboxes.iter().find(|m| m.kind == kind)
    }
}

impl Mailbox {
    fn read(config_path: &Path, kind: Kind, section: &Yaml) -> Mailbox {
        let get = |key: &str| section.as_mapping_get(key).and_then(scalar);
        let nonempty = |key: &str| get(key).filter(|v| !v.is_empty());
        // GitLab's default when secret_file is absent (gitlab.yml.example).
        let secret = nonempty("secret_file").unwrap_or_else(|| ".gitlab_mailroom_secret".into());
        let public_key_files = section
            .as_mapping_get("public_key_files")
            .and_then(|v| v.as_sequence())
            .map(|seq| seq.iter().filter_map(scalar).collect::<Vec<_>>())
            .unwrap_or_default()
            .iter()
            .map(|f| resolve(config_path, f))
            .collect();
        Mailbox {
            kind,
            enabled: section.as_mapping_get("enabled").is_some_and(truthy),
            address: nonempty("address"),
            // GitLab's Gitlab::MailRoom::DEFAULT_CONFIG.
            delivery_method: nonempty("delivery_method").unwrap_or_else(|| "sidekiq".into()),
            gitlab_url: nonempty("gitlab_url"),
            secret_file: resolve(config_path, &secret),
            public_key_files,
            imap_host: nonempty("host"),
            inbox_method: nonempty("inbox_method").filter(|m| m != "imap"),
        }
    }

    /// Whether GitLab takes mail for this mailbox: enabled, with an address
    /// (GitLab's `Gitlab::MailRoom.enabled?`).
    pub fn active(&self) -> bool {
        self.enabled && self.address.is_some()
    }

    /// Why gitlab-mailgate cannot serve this mailbox as GitLab has it, with
    /// the change to make in GitLab; `None` when it can.
    pub fn refusal(&self) -> Option<String> {
        let name = self.kind.name();
        if self.delivery_method != "webhook" {
            return Some(format!(
                "{name}.delivery_method is {:?}: gitlab-mailgate posts to GitLab's API and needs \
                 \"webhook\" (gitlab.rb: gitlab_rails['{name}_delivery_method'] = \"webhook\", \
                 then gitlab-ctl reconfigure)",
                self.delivery_method
            ));
        }
        match &self.address {
            Some(a) if !a.contains("%{key}") => {
                return Some(format!(
                    "{name}.address {a:?} {} (gitlab.rb: gitlab_rails['{name}_address'])",
                    crate::address::NO_KEY
                ))
            }
            _ => {}
        }
        if let Some(host) = &self.imap_host {
            return Some(format!(
                "{name} still reads the IMAP mailbox at {host}: mail_room would fetch the same \
                 mail; unset gitlab_rails['{name}_host'], ['{name}_email'] and ['{name}_password'] \
                 in gitlab.rb and stop mail_room (mailroom['enable'] = false)"
            ));
        }
        if let Some(method) = &self.inbox_method {
            return Some(format!(
                "{name}.inbox_method is {method:?}: mail_room would fetch the same mail; \
                 remove gitlab_rails['{name}_inbox_method'] and stop mail_room"
            ));
        }
        None
    }
}

/// A scalar as text (`port: 443` gives "443"); `None` for null, empty
/// collections and the like.
fn scalar(v: &Yaml) -> Option<String> {
    if let Some(s) = v.as_str() {
        return Some(s.to_string());
    }
    if let Some(i) = v.as_integer() {
        return Some(i.to_string());
    }
    v.as_bool().map(|b| b.to_string())
}

/// A flag as Ruby's Psych (YAML 1.1) reads it.
fn truthy(v: &Yaml) -> bool {
    match (v.as_bool(), v.as_str()) {
        (Some(b), _) => b,
        (None, Some(s)) => matches!(s.to_ascii_lowercase().as_str(), "true" | "yes" | "on" | "y"),
        _ => false,
    }
}

/// Makes a path from gitlab.yml absolute. GitLab resolves relative paths
/// against its Rails root (`config/..` of a source installation). Omnibus
/// renders `.gitlab_incoming_email_secret`, a link in the Rails root to
/// `gitlab_incoming_email_secret` beside gitlab.yml: that file is used
/// directly, so a copy of Omnibus's etc directory works too.
pub fn resolve(config_path: &Path, value: &str) -> PathBuf {
    let value = Path::new(value);
    if value.is_absolute() {
        return value.to_path_buf();
    }
    let dir = config_path.parent().unwrap_or(Path::new("/"));
    let omnibus = dir.file_name().is_some_and(|n| n == "etc")
        && dir
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == "gitlab-rails");
    if omnibus {
        if let Some(name) = value.to_str().and_then(|v| v.strip_prefix('.')) {
            if !name.contains('/') {
                return dir.join(name);
            }
        }
        return Path::new("/opt/gitlab/embedded/service/gitlab-rails").join(value);
    }
    dir.parent().unwrap_or(dir).join(value)
}

#[cfg(test)]
mod tests;
