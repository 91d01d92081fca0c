//! gitlab-mailgate's library: the delivery core and its two front doors
//! (LMTP server and pipe command). `main.rs` only dispatches.

pub mod access;
pub mod address;
pub mod check;
pub mod cli;
pub mod config;
pub mod deliver;
#[doc(hidden)]
pub mod fuzzing;
pub mod gitlab;
pub mod gitlab_yml;
pub mod jwt;
pub mod key;
pub mod keygen;
pub mod lmtp;
pub mod log;
pub mod message;
pub mod outcome;
pub mod pipe;
pub mod postfix_conf;
pub mod reply;
pub mod secret;
pub mod setup;
pub mod signing_key;
