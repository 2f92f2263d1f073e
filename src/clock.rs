//! The wall clock: read in one place, written one way.
//!
//! A leaf (it imports nothing of the crate). Stored times (statements,
//! failure records, lockfiles, night records, calibrations) are RFC 3339 UTC;
//! durations never come from here but from the monotonic clock (STYLE "Hot
//! path"). Every formatter first moves the time into the years RFC 3339
//! can spell, because a machine whose clock is set before 1970 must not
//! panic a run while writing down when it happened.

use std::time::{Duration, SystemTime};

use humantime::TimestampError;

/// The wall clock now.
pub fn now() -> SystemTime {
    SystemTime::now()
}

/// RFC 3339 UTC with milliseconds, the form every stored run time takes.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(representable(t)).to_string()
}

/// RFC 3339 UTC to the second (lockfiles, night records, run ids).
pub fn rfc3339_seconds(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(representable(t)).to_string()
}

/// RFC 3339 UTC to the nanosecond (a run's monotonic origin).
pub fn rfc3339_nanos(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(representable(t)).to_string()
}

/// Now, RFC 3339 UTC to the second.
pub fn now_rfc3339_seconds() -> String {
    rfc3339_seconds(now())
}

/// Reads an RFC 3339 time as written above.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, TimestampError> {
    humantime::parse_rfc3339(text)
}

/// Whole seconds since the Unix epoch; 0 before it.
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `t` moved into the years RFC 3339 formatting handles (1970 to 9999): a
/// clock set before the epoch must not panic a run.
pub fn representable(t: SystemTime) -> SystemTime {
    // 9999-12-31T23:59:59Z
    const LAST: u64 = 253_402_300_799;
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Err(_) => SystemTime::UNIX_EPOCH,
        Ok(d) if d.as_secs() > LAST => SystemTime::UNIX_EPOCH + Duration::from_secs(LAST),
        Ok(_) => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_outside_rfc_3339_are_clamped_not_a_panic() {
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(rfc3339_seconds(before), "1970-01-01T00:00:00Z");
        let after = SystemTime::UNIX_EPOCH + Duration::from_secs(300_000_000_000);
        assert_eq!(rfc3339(after), "9999-12-31T23:59:59.000Z");
        assert_eq!(unix_seconds(before), 0);
    }

    #[test]
    fn written_times_read_back() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_790_000_000_123);
        assert_eq!(parse_rfc3339(&rfc3339(t)), Ok(t));
        assert_eq!(rfc3339_nanos(t), "2026-09-21T14:13:20.123000000Z");
    }
}
