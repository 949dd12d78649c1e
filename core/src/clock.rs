//! Wall-clock time for `date` headers, derived from the driver's `now` and one anchor.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

/// Maps the monotonic `now` the driver passes in onto wall time, and caches the formatted
/// `date` value for the current second (formatting per response would cost more than the
/// response itself).
pub(crate) struct Clock {
    anchor: Instant,
    wall: SystemTime,
    cached_second: Option<u64>,
    date: Bytes,
}

impl Clock {
    pub(crate) fn new(anchor: Instant, wall: SystemTime) -> Clock {
        Clock { anchor, wall, cached_second: None, date: Bytes::new() }
    }

    /// The IMF-fixdate for `now`.
    pub(crate) fn date(&mut self, now: Instant) -> Bytes {
        let at = self.wall + now.saturating_duration_since(self.anchor);
        let second = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
        if self.cached_second != Some(second) {
            self.cached_second = Some(second);
            self.date = Bytes::from(httpdate::fmt_http_date(at));
        }
        self.date.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_follows_now_from_the_anchor() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut clock = Clock::new(t0, wall);
        assert_eq!(&clock.date(t0)[..], b"Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(&clock.date(t0 + Duration::from_secs(61))[..], b"Tue, 14 Nov 2023 22:14:21 GMT");
    }
}
