//! Can a given user open a file? Answered from owners and mode bits along
//! the path, so that root (`setup`, `check`) can tell what the service user
//! `gitlab-mailgate` or Postfix's `postfix` will meet, and an error can
//! name the directory or file in the way and the change that fixes it.
//!
//! It does not read ACLs: a path it calls blocked may still be open to the
//! user through one (the fix it names then is already in place).

use std::ffi::{CStr, CString};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The service user of the package.
pub const SERVICE_USER: &str = "gitlab-mailgate";

/// A user and the groups it is in.
#[derive(Debug, Clone)]
pub struct User {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary and supplementary gids.
    pub gids: Vec<u32>,
}

/// What a user needs of the last path component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Read a file.
    Read,
    /// Connect to a unix socket (write permission).
    Connect,
}

impl User {
    /// Looks `name` up in the user database; `None` when there is no such user.
    pub fn lookup(name: &str) -> Option<User> {
        let cname = CString::new(name).ok()?;
        // SAFETY: getpwnam returns NULL or a pointer to static storage that
        // stays valid until the next getpw* call; we copy out at once.
        let (uid, gid) = unsafe {
            let pw = libc::getpwnam(cname.as_ptr());
            if pw.is_null() {
                return None;
            }
            ((*pw).pw_uid, (*pw).pw_gid)
        };
        let mut gids = vec![0 as libc::gid_t; 256];
        let mut n = gids.len() as libc::c_int;
        // SAFETY: the buffer holds n entries; getgrouplist writes at most n.
        let rc = unsafe { libc::getgrouplist(cname.as_ptr(), gid, gids.as_mut_ptr(), &mut n) };
        gids.truncate(if rc < 0 { 0 } else { n as usize });
        if !gids.contains(&gid) {
            gids.push(gid);
        }
        Some(User {
            name: name.to_string(),
            uid,
            gids,
        })
    }

    /// Why this user cannot use `path` as `need` says, with the fix; `None`
    /// when nothing in the mode bits stands in the way (or the path does not
    /// exist: that is reported elsewhere).
    pub fn blocked(&self, path: &Path, need: Need) -> Option<String> {
        if self.uid == 0 {
            return None;
        }
        let mut dirs: Vec<PathBuf> = path.ancestors().skip(1).map(Path::to_path_buf).collect();
        dirs.reverse();
        for dir in dirs.iter().filter(|d| !d.as_os_str().is_empty()) {
            let meta = std::fs::metadata(dir).ok()?;
            if !self.may(&meta, 0o1) {
                return Some(self.fix(dir, &meta, "enter the directory", 0o1));
            }
        }
        let meta = std::fs::metadata(path).ok()?;
        let (bit, what) = match need {
            Need::Read => (0o4, "read"),
            Need::Connect => (0o2, "connect to"),
        };
        (!self.may(&meta, bit)).then(|| self.fix(path, &meta, what, bit))
    }

    fn may(&self, meta: &std::fs::Metadata, bit: u32) -> bool {
        let mode = meta.mode();
        if meta.uid() == self.uid {
            mode & (bit << 6) != 0
        } else if self.gids.contains(&meta.gid()) {
            mode & (bit << 3) != 0
        } else {
            mode & bit != 0
        }
    }

    fn fix(&self, path: &Path, meta: &std::fs::Metadata, what: &str, bit: u32) -> String {
        let group = group_name(meta.gid());
        let owner = user_name(meta.uid());
        let mode = meta.mode() & 0o7777;
        let p = path.display();
        let state = format!("{p} is {owner}:{group} {mode:04o}");
        if meta.mode() & (bit << 3) != 0 && meta.uid() != self.uid {
            format!(
                "user {} cannot {what} {p} ({state}): add it to the group {group} \
                 (usermod -a -G {group} {}) and restart gitlab-mailgate",
                self.name, self.name
            )
        } else {
            format!(
                "user {} cannot {what} {p} ({state}): grant it access \
                 (setfacl -m u:{}:{} {p}) or use a copy it can read",
                self.name,
                self.name,
                if bit == 0o1 {
                    "x"
                } else if bit == 0o2 {
                    "rw"
                } else {
                    "r"
                }
            )
        }
    }
}

/// The name of group `gid`, or the number.
pub fn group_name(gid: u32) -> String {
    // SAFETY: getgrgid returns NULL or static storage; copied at once.
    unsafe {
        let gr = libc::getgrgid(gid);
        if gr.is_null() {
            return gid.to_string();
        }
        CStr::from_ptr((*gr).gr_name).to_string_lossy().into_owned()
    }
}

/// The name of user `uid`, or the number.
pub fn user_name(uid: u32) -> String {
    // SAFETY: getpwuid returns NULL or static storage; copied at once.
    unsafe {
        let pw = libc::getpwuid(uid);
        if pw.is_null() {
            return uid.to_string();
        }
        CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned()
    }
}

/// Why the running process cannot read `path`, with the fix, when opening
/// it fails for lack of permission.
pub fn unreadable_here(path: &Path) -> Option<String> {
    match std::fs::File::open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            // SAFETY: geteuid has no preconditions.
            let uid = unsafe { libc::geteuid() };
            let name = user_name(uid);
            let user = User::lookup(&name).unwrap_or(User {
                name,
                uid,
                gids: Vec::new(),
            });
            Some(
                user.blocked(path, Need::Read)
                    .unwrap_or_else(|| format!("cannot read {}: {e}", path.display())),
            )
        }
        _ => None,
    }
}
