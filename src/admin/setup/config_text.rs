//! The configuration file `setup` writes. Where the service user can read
//! GitLab's gitlab.yml and secret files, it only points at them
//! (`[gitlab] config_file`), so a change in GitLab needs no change here.
//! Where it cannot (Omnibus keeps them in `/var/opt/gitlab/gitlab-rails/etc`,
//! mode 0700 for the user git), it writes what it read and copies the
//! secrets next to the configuration, root:gitlab-mailgate 0640.

use crate::admin::access::{User, SERVICE_USER};
use crate::config::gitlab_yml::GitlabYml;
use std::path::{Path, PathBuf};

/// A secret file to copy: from GitLab's, to ours.
#[derive(Debug, Clone)]
pub struct Copy {
    /// GitLab's secret file.
    pub from: PathBuf,
    /// Ours, beside the configuration file.
    pub to: PathBuf,
}

/// The text of the configuration file, and the secrets it needs copied.
pub fn render(config: &Path, yml: &GitlabYml, listen: Option<&str>) -> (String, Vec<Copy>) {
    let active: Vec<_> = yml.mailboxes.iter().filter(|m| m.active()).collect();
    let blocked = User::lookup(SERVICE_USER).and_then(|user| {
        std::iter::once(yml.path.as_path())
            .chain(active.iter().map(|m| m.secret_file.as_path()))
            .find_map(|p| user.blocked(p, crate::admin::access::Need::Read))
    });
    let mut text = String::from(
        "# gitlab-mailgate configuration, written by `gitlab-mailgate setup`.\n\
         # Every setting of the packaged example (/usr/share/doc/gitlab-mailgate/)\n\
         # may be added; `gitlab-mailgate setup` shows a diff before replacing it.\n\n",
    );
    let mut copies = Vec::new();
    match blocked {
        None => {
            text.push_str(&format!(
                "[gitlab]\n\
                 # GitLab's addresses, secret files and URL are read from here at every\n\
                 # start; a setting given below wins over GitLab's.\n\
                 config_file = \"{}\"\n",
                yml.path.display()
            ));
        }
        Some(why) => {
            let url = active
                .iter()
                .find_map(|m| m.gitlab_url.clone())
                .unwrap_or_else(|| yml.external_url.clone());
            text.push_str(&format!(
                "# Read from {} by setup, because {why}.\n\
                 # Run `gitlab-mailgate setup` again after changing GitLab's e-mail settings.\n\
                 [gitlab]\nurl = \"{url}\"\nhost = \"{}\"\n",
                yml.path.display(),
                yml.host
            ));
            let dir = config.parent().unwrap_or(Path::new("/etc/gitlab-mailgate"));
            for m in &active {
                let to = dir.join(format!("{}_secret", m.kind.name()));
                text.push_str(&format!(
                    "\n[{}]\naddress = \"{}\"\nsecret_file = \"{}\"\n",
                    m.kind.name(),
                    m.address.as_deref().unwrap_or_default(),
                    to.display()
                ));
                copies.push(Copy {
                    from: m.secret_file.clone(),
                    to,
                });
            }
        }
    }
    if let Some(addr) = listen {
        text.push_str(&format!(
            "\n[lmtp]\n# Where Postfix delivers (setup --lmtp-target).\nlisten = [\"{addr}\"]\n"
        ));
    }
    (text, copies)
}
