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
#[doc(hidden)]
pub mod fuzzing;
mod gitlab;
mod jwt;
mod key;
pub mod keygen;
pub mod lmtp;
mod log;
pub mod message;
mod outcome;
pub mod pipe;
// Public only until the LMTP rewrite (another branch) drops its unused
// codes (`E_MEDIA`, `TRANSACTION_FAILED`); nothing outside uses it.
pub mod reply;
mod secret;
mod signing_key;
