//! The simulator's HTTP/1.1 suite: requests proxied through the upstream pool (keep-alive
//! reuse, pipelining, `Expect: 100-continue`, content-length, chunked and until-close bodies,
//! resets and deaths mid-response, breakers under load, max_requests_per_connection, idle and
//! route timeouts, the buffer filter), under seeded faults. Two halves share the cores. See
//! `sim/src/lib.rs` ("Running") for `BURROW_SIM_CASES`, `BURROW_SIM_SEED` and friends.

use burrow_sim::suite::run_suite_part;
use burrow_sim::Suite;

const CASES: u32 = 320;

#[test]
fn requests_through_the_pool_under_faults_part_1() {
    run_suite_part(Suite::Http1, CASES, 0, 2);
}

#[test]
fn requests_through_the_pool_under_faults_part_2() {
    run_suite_part(Suite::Http1, CASES, 1, 2);
}
