//! The simulator's HTTP/1.1 suites: requests proxied through the upstream pool (keep-alive
//! reuse, pipelining, resets mid-response, breakers under load, max_requests_per_connection,
//! idle and route timeouts), and upgrades (101 then a tunnel; refused upgrades), under seeded
//! faults. See `sim/src/suite.rs` for `BURROW_SIM_CASES`, `BURROW_SIM_SEED` and friends.

use burrow_sim::suite::run_suite;
use burrow_sim::Suite;

#[test]
fn requests_through_the_pool_under_faults() {
    run_suite(Suite::Http1, 160);
}
