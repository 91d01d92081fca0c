//! Can a given user open a file? Asked of the kernel as that user, so that
//! root (`setup`, `check`) learns what the service user `gitlab-mailgate`
//! or Postfix's `postfix` will meet, ACLs and all, and an error can name
//! the directory or file in the way.
//!
//! A forked child takes on the user's uid and groups and calls `access(2)`
//! on each directory down the path, then on the file; its exit status says
//! which one, if any, refused. Owners and mode bits are only read to word
//! the message. The fix it names for GitLab's files is never "join GitLab's
//! group" (that opens far more than two secret files): setup copies the
//! secrets instead, or the admin grants just this path with an ACL.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The service user of the package.
pub const SERVICE_USER: &str = "gitlab-mailgate";

/// How long the kernel may take to answer (a hung network file system
/// must not hang `setup` or `check`).
const ASK_LIMIT: Duration = Duration::from_secs(5);

/// A user and the groups it is in.
#[derive(Debug, Clone)]
pub struct User {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
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

/// What stands in the way, worded for the administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// "user U cannot read P (P is O:G 0640)".
    pub what: String,
    /// The ACL that grants just this, with where `setfacl` comes from.
    pub acl: String,
}

/// What the kernel answered for a path, component by component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Every step is allowed.
    Allowed,
    /// Step `n` (0: the top directory) is refused.
    Denied(usize),
    /// The path does not exist (reported elsewhere), or could not be
    /// asked about (not root, the check did not finish).
    Unknown,
}

/// Exit statuses of the asking child; 0 is "allowed", `DENIED + n` step n.
const GONE: i32 = 1;
const CANNOT_SWITCH: i32 = 2;
const DENIED: i32 = 8;
/// Steps beyond this many are not asked about (exit statuses are bytes).
const MAX_STEPS: usize = 240;

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
            gids.insert(0, gid);
        }
        Some(User {
            name: name.to_string(),
            uid,
            gid,
            gids,
        })
    }

    /// Why this user cannot use `path` as `need` says, with the fix; `None`
    /// when the kernel lets it (or the path does not exist: that is
    /// reported elsewhere; or this process cannot ask as the user).
    pub fn blocked(&self, path: &Path, need: Need) -> Option<String> {
        let denied = self.denied(path, need)?;
        Some(match need {
            // Our own socket: its group and mode are ours to choose.
            Need::Connect => format!(
                "{}: give the socket a group {} is in (SocketGroup= of the socket \
                 unit, or [lmtp] socket_mode for a socket serve creates)",
                denied.what, self.name
            ),
            Need::Read => format!(
                "{}: run `gitlab-mailgate setup`, which copies GitLab's secret files \
                 where {} can read them, or grant just this: {}",
                denied.what, self.name, denied.acl
            ),
        })
    }

    /// What stands in the way of this user using `path` as `need` says.
    pub fn denied(&self, path: &Path, need: Need) -> Option<Denied> {
        let mut steps: Vec<PathBuf> = path
            .ancestors()
            .skip(1)
            .filter(|d| !d.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .collect();
        steps.reverse();
        steps.push(path.to_path_buf());
        let (at, what, perm) = match self.ask(&steps, need) {
            Answer::Denied(n) if n + 1 < steps.len() => (&steps[n], "enter the directory", "x"),
            Answer::Denied(_) => match need {
                Need::Read => (&steps[steps.len() - 1], "read", "r"),
                Need::Connect => (&steps[steps.len() - 1], "connect to", "w"),
            },
            Answer::Allowed | Answer::Unknown => return None,
        };
        let p = at.display();
        let state = match std::fs::metadata(at) {
            Ok(meta) => format!(
                " ({p} is {}:{} {:04o})",
                user_name(meta.uid()),
                group_name(meta.gid()),
                meta.mode() & 0o7777
            ),
            Err(_) => String::new(),
        };
        Some(Denied {
            what: format!("user {} cannot {what} {p}{state}", self.name),
            acl: format!(
                "setfacl -m u:{}:{perm} {p} (setfacl is in the Debian package acl)",
                self.name
            ),
        })
    }

    /// Asks the kernel, as this user, about each of `steps`: search
    /// permission on the directories, then `need` on the last.
    fn ask(&self, steps: &[PathBuf], need: Need) -> Answer {
        let Ok(paths) = steps
            .iter()
            .take(MAX_STEPS)
            .map(|p| CString::new(p.as_os_str().as_bytes()))
            .collect::<Result<Vec<_>, _>>()
        else {
            return Answer::Unknown;
        };
        let last = match need {
            Need::Read => libc::R_OK,
            Need::Connect => libc::W_OK,
        };
        let modes: Vec<libc::c_int> = (0..paths.len())
            .map(|i| {
                if i + 1 == steps.len() {
                    last
                } else {
                    libc::X_OK
                }
            })
            .collect();
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if euid == self.uid {
            // Already this user: ask directly.
            return answer(check_steps(&paths, &modes));
        }
        if euid != 0 {
            return Answer::Unknown;
        }
        self.ask_in_child(&paths, &modes)
    }

    /// [`ask`](Self::ask) in a child process that becomes this user.
    fn ask_in_child(&self, paths: &[CString], modes: &[libc::c_int]) -> Answer {
        let gids: Vec<libc::gid_t> = self.gids.clone();
        // Everything the child uses is allocated before the fork: between
        // fork and _exit it only makes system calls.
        // SAFETY: fork has no preconditions; see the child below.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Answer::Unknown;
        }
        if pid == 0 {
            // SAFETY: async-signal-safe calls only, on memory allocated
            // before the fork; _exit never returns and runs no destructor.
            unsafe {
                let switched = libc::setgroups(gids.len(), gids.as_ptr()) == 0
                    && libc::setgid(self.gid) == 0
                    && libc::setuid(self.uid) == 0;
                libc::_exit(if switched {
                    check_steps(paths, modes)
                } else {
                    CANNOT_SWITCH
                });
            }
        }
        let start = Instant::now();
        let mut status = 0;
        loop {
            // SAFETY: pid is our child; status is a valid out-pointer.
            let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if rc == pid {
                break;
            }
            let interrupted =
                std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted;
            if rc < 0 && !interrupted {
                return Answer::Unknown;
            }
            if start.elapsed() > ASK_LIMIT {
                // SAFETY: pid is our child, not yet reaped.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                return Answer::Unknown;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if libc::WIFEXITED(status) {
            answer(libc::WEXITSTATUS(status))
        } else {
            Answer::Unknown
        }
    }
}

/// `access(2)` on each path in turn; the exit status the child reports.
/// Only system calls: it runs between fork and _exit.
fn check_steps(paths: &[CString], modes: &[libc::c_int]) -> i32 {
    for (n, (path, mode)) in paths.iter().zip(modes).enumerate() {
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::access(path.as_ptr(), *mode) } != 0 {
            // SAFETY: reading errno of this thread.
            let errno = unsafe { *libc::__errno_location() };
            return if errno == libc::EACCES || errno == libc::EPERM {
                DENIED + n as i32
            } else {
                GONE
            };
        }
    }
    0
}

fn answer(status: i32) -> Answer {
    match status {
        0 => Answer::Allowed,
        n if n >= DENIED => Answer::Denied((n - DENIED) as usize),
        _ => Answer::Unknown,
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
            // SAFETY: geteuid and getegid have no preconditions.
            let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
            let name = user_name(uid);
            let user = User::lookup(&name).unwrap_or(User {
                name,
                uid,
                gid,
                gids: vec![gid],
            });
            Some(
                user.blocked(path, Need::Read)
                    .unwrap_or_else(|| format!("cannot read {}: {e}", path.display())),
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_the_kernel_as_the_user() {
        let dir = std::env::temp_dir().join(format!("mailgate-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, b"x").unwrap();
        // SAFETY: geteuid/getegid have no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let me = User {
            name: user_name(uid),
            uid,
            gid,
            gids: vec![gid],
        };
        assert_eq!(me.blocked(&file, Need::Read), None);
        assert_eq!(me.blocked(&dir.join("missing"), Need::Read), None);
        if uid == 0 {
            // nobody cannot enter a 0700 directory of root's.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            let nobody = User::lookup("nobody").expect("user nobody");
            let why = nobody.blocked(&file, Need::Read).expect("blocked");
            assert!(why.contains("cannot enter the directory"), "{why}");
            assert!(
                why.contains("package acl") && !why.contains("usermod"),
                "{why}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
