//! gitlab-mailgate's library. `main.rs` only parses the command line
//! (`cli`) and dispatches.
//!
//! The delivery path, top down: the two front doors (`lmtp`, `pipe`; and
//! `http` for probes and metrics), the delivery core (`deliver`, which
//! reports every attempt to its `observe`r and asks `guard`), the one
//! table that classifies what happened (`outcome`), and GitLab's API
//! (`gitlab`, signing in `jwt`). Both front doors keep the message they
//! receive in `spool` (memory, or an unlinked temporary file when it is
//! large), which the core and the client read. Beside it, `admin` holds the commands an
//! administrator runs (`setup`, `check`, `keygen`). Every part owns its
//! settings; `config` only composes and checks the file.
//!
//! Public are the modules the binary, the integration tests, the examples
//! and the fuzz targets use; the rest is internal and may change freely.

pub(crate) mod access;
pub mod address;
pub mod admin;
pub mod cli;
pub mod config;
mod deliver;
mod envelope;
mod es256;
mod file;
#[doc(hidden)]
pub mod fuzzing;
mod gitlab;
pub mod guard;
mod health;
mod http;
mod jwt;
pub mod lmtp;
mod log;
pub(crate) mod lookup;
mod mail_key;
pub mod mailbox;
pub mod message;
mod metrics;
mod observe;
#[doc(hidden)]
pub mod outcome;
pub mod pipe;
mod poll;
mod range;
mod reply;
mod secret;
mod spool;
