//! The simulator's CONNECT suite: terminated CONNECT over HTTP/1.1 through the whole core,
//! with early data, half-closes, resets, refused and never-completing connects, connect
//! timeouts, DNS names (failing, slow, never answered) and breakers, under seeded faults.
//! Two halves share the cores. See `sim/src/lib.rs` ("Running") for `BURROW_SIM_CASES`,
//! `BURROW_SIM_SEED` and friends.

use burrow_sim::suite::run_suite_part;
use burrow_sim::Suite;

const CASES: u32 = 400;

#[test]
fn connect_tunnels_under_faults_part_1() {
    run_suite_part(Suite::Connect, CASES, 0, 2);
}

#[test]
fn connect_tunnels_under_faults_part_2() {
    run_suite_part(Suite::Connect, CASES, 1, 2);
}
