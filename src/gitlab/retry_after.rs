//! HTTP `Retry-After` (RFC 9110 §10.2.3), which GitLab or its proxy may
//! send with 429 or 503: delay-seconds or an HTTP-date. Dates are read by
//! the `httpdate` crate. The value is only read here; how long the circuit
//! breaker honours it (clamped to its longest cool-down) is the guard's.

use std::time::{Duration, SystemTime};

/// The wait `value` asks for, counted from `now`; `None` when unreadable.
/// A date in the past is no wait.
pub fn parse(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse("Fri, 31 Dec 9999 23:59:59 GMT", now).map(|d| d > Duration::ZERO),
            Some(true)
        );
        for bad in [
            "",
            "soon",
            "-5",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "99999999999999999999999",
        ] {
            assert_eq!(parse(bad, now), None, "{bad}");
        }
    }
}
