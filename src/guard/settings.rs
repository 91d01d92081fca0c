//! The `[guard]` section of the configuration: what the guards do and
//! their limits. Parsed by `config` (which reports errors with file, line
//! and column); defaults are the and the packaged config's.

use crate::range;
use serde::Deserialize;
use std::time::Duration;

/// What to do with mail from the null sender (`MAIL FROM:<>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NullSender {
    /// LMTP: 550 5.7.1 at RCPT; pipe: discarded, exit 0.
    Refuse,
    /// Deliver it like any other.
    Accept,
}

/// The checked `[guard]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Mail from the null sender.
    pub null_sender: NullSender,
    /// Messages per (sender, key) reaching GitLab in `loop_window` (0: no
    /// loop breaker).
    pub loop_limit: usize,
    /// The loop breaker's sliding window.
    pub loop_window: Duration,
    /// Posts to GitLab at once from one `serve`.
    pub max_in_flight: usize,
    /// How long a delivery waits for one of those.
    pub slot_wait: Duration,
    /// Temporary failures in a row that open the circuit breaker (0: only
    /// GitLab's `Retry-After` opens it).
    pub breaker_failures: u32,
    /// The longest cool-down of the open breaker.
    pub breaker_max_cooldown: Duration,
}

impl Default for Settings {
    /// The defaults; `packaging/config.toml` shows the same.
    fn default() -> Self {
        Settings {
            null_sender: NullSender::Refuse,
            loop_limit: 10,
            loop_window: Duration::from_secs(600),
            max_in_flight: 16,
            slot_wait: Duration::from_secs(5),
            breaker_failures: 5,
            breaker_max_cooldown: Duration::from_secs(300),
        }
    }
}

/// The section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSettings {
    null_sender: NullSender,
    loop_limit: usize,
    loop_window_secs: u64,
    max_in_flight: usize,
    slot_wait_secs: u64,
    breaker_failures: u32,
    breaker_max_cooldown_secs: u64,
}

impl Default for RawSettings {
    fn default() -> Self {
        let s = Settings::default();
        RawSettings {
            null_sender: s.null_sender,
            loop_limit: s.loop_limit,
            loop_window_secs: s.loop_window.as_secs(),
            max_in_flight: s.max_in_flight,
            slot_wait_secs: s.slot_wait.as_secs(),
            breaker_failures: s.breaker_failures,
            breaker_max_cooldown_secs: s.breaker_max_cooldown.as_secs(),
        }
    }
}

impl RawSettings {
    /// The checked settings, or what to fix.
    /// Ranges: `loop_limit` 0 to 1,000,000; `loop_window_secs` 1 to
    /// 604,800 (a week); `max_in_flight` 1 to 1024; `slot_wait_secs` 0 to
    /// 300; `breaker_failures` 0 to 1,000,000; `breaker_max_cooldown_secs`
    /// 5 (the first cool-down) to 86,400.
    pub fn check(self) -> Result<Settings, String> {
        let n = |key, value: u64, range| range::check(key, value, range);
        let secs = |key, value, range| Ok::<_, String>(Duration::from_secs(n(key, value, range)?));
        if self.loop_limit > 0 && self.loop_window_secs == 0 {
            return Err("[guard] loop_window_secs must be at least 1 (or loop_limit = 0 to turn the loop breaker off)".into());
        }
        Ok(Settings {
            null_sender: self.null_sender,
            loop_limit: n("[guard] loop_limit", self.loop_limit as u64, 0..=1_000_000)? as usize,
            loop_window: secs(
                "[guard] loop_window_secs",
                self.loop_window_secs,
                0..=604_800,
            )?,
            max_in_flight: n("[guard] max_in_flight", self.max_in_flight as u64, 1..=1024)?
                as usize,
            slot_wait: secs("[guard] slot_wait_secs", self.slot_wait_secs, 0..=300)?,
            breaker_failures: n(
                "[guard] breaker_failures",
                self.breaker_failures.into(),
                0..=1_000_000,
            )? as u32,
            breaker_max_cooldown: secs(
                "[guard] breaker_max_cooldown_secs",
                self.breaker_max_cooldown_secs,
                5..=86_400,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_check_and_are_the_documented_ones() {
        assert_eq!(RawSettings::default().check(), Ok(Settings::default()));
    }
}
