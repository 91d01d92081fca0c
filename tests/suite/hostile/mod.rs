//! Hostile and malformed input against the real binary: `serve` over
//! loopback TCP driven byte by byte, and `deliver` fed on standard input,
//! both delivering to the JWT-verifying GitLab stand-in.
//!
//! Each case checks the reply code and enhanced code (or the exit status
//! and DSN), that nothing reached GitLab that should not, that the server
//! did not panic and still serves a normal delivery on another connection,
//! and, for the nasty cases, that its peak memory stayed bounded. Waits are
//! bounded; nothing asserts on timing.

mod admin;
mod commands;
mod connections;
mod content;
mod edges;
mod http_attack;
mod log_lines;
mod lookup;
mod memory;
mod pipe;
mod reload;
mod slots;
mod transactions;
mod units;
