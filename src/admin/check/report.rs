//! `check`'s output: one line per check, `ok`, `warn` or `FAIL`; the
//! exit status remembers whether anything failed.

use std::fmt::Display;

/// The lines printed so far, and whether one was a failure.
#[derive(Default)]
pub(super) struct Report {
    pub(super) failed: bool,
}

impl Report {
    pub(super) fn ok(&mut self, what: impl Display) {
        println!("ok    {what}");
    }
    pub(super) fn warn(&mut self, what: impl Display) {
        println!("warn  {what}");
    }
    pub(super) fn fail(&mut self, what: impl Display) {
        println!("FAIL  {what}");
        self.failed = true;
    }
}
