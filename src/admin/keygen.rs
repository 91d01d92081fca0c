//! `gitlab-mailgate keygen MAILBOX [--out FILE]`: a new ES256 signing key.
//!
//! The private key goes to a new file (never over an existing one: the old
//! key must keep working until GitLab knows the new public key), mode 0640,
//! owned root:gitlab-mailgate when that group exists. Standard output gets
//! the public key and the GitLab settings that install it, in the order an
//! administrator applies them: GitLab first, then this host. The private
//! key is never printed.

use crate::es256::SigningKey;
use crate::mailbox::MailboxKind;
use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The group the service runs as; it must be able to read the key.
const SERVICE_GROUP: &str = "gitlab-mailgate";

/// The default key file for `mailbox`.
pub fn default_path(mailbox: MailboxKind) -> PathBuf {
    PathBuf::from(format!(
        "/etc/gitlab-mailgate/{}_signing_key.pem",
        mailbox.name()
    ))
}

/// Makes the key, writes it, prints the instructions.
pub fn run(mailbox: MailboxKind, out: Option<&Path>) -> ExitCode {
    let path = out.map_or_else(|| default_path(mailbox), Path::to_path_buf);
    match write_key(&path) {
        Ok((key, owner_note)) => {
            print!("{}", instructions(mailbox, &path, &key));
            if let Some(note) = owner_note {
                eprintln!("gitlab-mailgate keygen: warning: {note}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gitlab-mailgate keygen: {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// Creates `path` with a new key. Returns the key and, when the owner
/// could not be set, why (the key is usable by root only then).
fn write_key(path: &Path) -> Result<(SigningKey, Option<String>), String> {
    let (key, pem) = SigningKey::generate().map_err(|e| e.to_string())?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                "exists; keygen never replaces a key (choose another --out)".to_string()
            }
            _ => e.to_string(),
        })?;
    // Ownership before content and before the group may read it.
    let owner_note = set_group(&file);
    file.set_permissions(fs::Permissions::from_mode(0o640))
        .and_then(|()| file.write_all(pem.as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(|e| {
            let _ = fs::remove_file(path);
            e.to_string()
        })?;
    Ok((key, owner_note))
}

/// root:gitlab-mailgate when the group exists (owner only changed when we
/// are root); `Some(why)` when that did not work.
fn set_group(file: &fs::File) -> Option<String> {
    let name = CString::new(SERVICE_GROUP).expect("no NUL in the group name");
    // SAFETY: getgrnam gets a valid C string; the result is read at once,
    // before any other call that could reuse its static buffer.
    let group = unsafe { libc::getgrnam(name.as_ptr()) };
    if group.is_null() {
        return Some(format!(
            "no group {SERVICE_GROUP}: the key is readable by its owner only; \
             chgrp it to the group the service runs as"
        ));
    }
    // SAFETY: group is non-null and points at getgrnam's struct.
    let gid = unsafe { (*group).gr_gid };
    // SAFETY: plain system calls on a descriptor we own.
    let uid = if unsafe { libc::geteuid() } == 0 {
        0
    } else {
        libc::uid_t::MAX // -1: keep the owner
    };
    if unsafe { libc::fchown(file.as_raw_fd(), uid, gid) } != 0 {
        return Some(format!(
            "cannot give the key to group {SERVICE_GROUP} ({}): run keygen as root, \
             or chgrp it yourself",
            std::io::Error::last_os_error()
        ));
    }
    None
}

/// What to do next, with the public key. `path` is where the private key is.
fn instructions(mailbox: MailboxKind, path: &Path, key: &SigningKey) -> String {
    let name = mailbox.name();
    // A name per key, so old and new public keys can sit side by side.
    let public = format!("/etc/gitlab/{name}_mailgate_{}.pub", &key.kid()[..12]);
    format!(
        "Wrote a new ES256 signing key for {name} to {path} (kid {kid}).\n\
         \n\
         1. On the GitLab host, save this public key as {public}:\n\
         \n\
         {pem}\
         \n\
         2. Add it to {name}'s public_key_files (keep keys still in use listed,\n   \
            so a rotation needs no cut-over), then restart GitLab.\n   \
            Linux package, /etc/gitlab/gitlab.rb (then gitlab-ctl reconfigure):\n\
         \n      \
               gitlab_rails['{name}_public_key_files'] = ['{public}']\n\
         \n   \
            Self-compiled, config/gitlab.yml, under {name}:\n\
         \n      \
               public_key_files:\n        \
                 - {public}\n\
         \n\
         3. Then, here, in the [{name}] section of the configuration:\n\
         \n      \
               signing_key_file = \"{path}\"\n\
         \n   \
            and run `gitlab-mailgate check`: it says \"{name} signs ES256\".\n",
        path = path.display(),
        kid = key.kid(),
        pem = key.public_key_pem(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_name_the_key_and_never_the_private_half() {
        let (key, pem) = SigningKey::generate().unwrap();
        let text = instructions(MailboxKind::ServiceDesk, Path::new("/k.pem"), &key);
        assert!(text.contains(&key.public_key_pem()));
        assert!(text.contains("gitlab_rails['service_desk_email_public_key_files']"));
        assert!(text.contains("signing_key_file = \"/k.pem\""));
        assert!(text.contains(key.kid()));
        let private_body = pem.lines().nth(1).unwrap();
        assert!(!text.contains(private_body));
    }
}
