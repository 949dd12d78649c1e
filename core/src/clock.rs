//! Wall-clock time for `date` headers and logs, derived from the driver's `now` and one anchor.

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

    /// The wall time at `now`.
    pub(crate) fn wall(&self, now: Instant) -> SystemTime {
        self.wall + now.saturating_duration_since(self.anchor)
    }

    /// The IMF-fixdate for `now`.
    pub(crate) fn date(&mut self, now: Instant) -> Bytes {
        let at = self.wall(now);
        let second = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
        if self.cached_second != Some(second) {
            self.cached_second = Some(second);
            self.date = Bytes::from(httpdate::fmt_http_date(at));
        }
        self.date.clone()
    }
}
