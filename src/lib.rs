//! gitlab-mailgate's library: the delivery core and its two front doors
//! (LMTP server and pipe command). `main.rs` only dispatches.
//!
//! Public are the modules the binary, the integration tests, the examples
//! and the fuzz targets use; the rest is internal and may change freely.

mod access;
pub mod address;
pub mod check;
pub mod cli;
pub mod config;
mod deliver;
mod envelope;
#[doc(hidden)]
pub mod fuzzing;
mod gitlab;
mod gitlab_yml;
pub mod guard;
mod health;
mod http;
mod jwt;
mod key;
pub mod keygen;
pub mod lmtp;
mod log;
pub mod message;
mod metrics;
mod outcome;
pub mod pipe;
mod postfix_conf;
mod reply;
mod secret;
pub mod setup;
mod signing_key;
