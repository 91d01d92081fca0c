//! gitlab-mailgate's library: the delivery core and its two front doors
//! (LMTP server and pipe command). `main.rs` only dispatches.
//!
//! Public are the modules the binary, the integration tests, the examples
//! and the fuzz targets use; the rest is internal and may change freely.

pub mod address;
pub mod check;
pub mod cli;
pub mod config;
mod deliver;
mod envelope;
#[doc(hidden)]
pub mod fuzzing;
mod gitlab;
pub mod guard;
mod jwt;
mod key;
pub mod keygen;
pub mod lmtp;
mod log;
pub mod message;
mod outcome;
pub mod pipe;
mod reply;
mod secret;
mod signing_key;
