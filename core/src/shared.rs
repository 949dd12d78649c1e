//! State shared by every worker of one process: what Envoy keeps process-wide.

use crate::config::Config;
use crate::stats::Stats;

/// The only state workers share: the stats store (read by the admin endpoint of any worker).
/// Built once from the config and handed to every worker's [`crate::Proxy`] in an `Arc`.
pub struct Shared {
    pub stats: Stats,
}

impl Shared {
    pub fn new(_config: &Config) -> Shared {
        Shared { stats: Stats::default() }
    }
}
