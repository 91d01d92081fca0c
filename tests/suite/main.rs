//! The integration tests, as one test binary: each module was once a test
//! crate of its own (`tests/NAME.rs`, `tests/hostile/`, `tests/postfix/`),
//! and all of them share the helpers in `common`. They run as threads of
//! one process, so none of them may change process-wide state (the
//! environment, the working directory, the umask): every child process
//! gets what it needs through its own `Command`.
//!
//! Data files stay where they were: `tests/emails`, `tests/data` and
//! `tests/support` (found through `CARGO_MANIFEST_DIR`).

mod common;

mod architecture;
mod check;
mod fuzz_short;
mod guard;
mod hostile;
mod http;
mod lmtp;
mod one_post;
mod package;
mod parity;
mod pipe;
mod postfix;
mod security;
mod syslog;
