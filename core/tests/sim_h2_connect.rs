//! The simulator's HTTP/2 CONNECT suite: clients speaking HTTP/2 (the `h2` crate's client,
//! driven on the virtual network) open several CONNECT tunnels on one connection each, through
//! the whole core to echo targets, with early ends, stream resets, refused and failing
//! connects and DNS names, under seeded faults. See `sim/src/lib.rs` ("Running") for
//! `BURROW_SIM_CASES`, `BURROW_SIM_SEED` and friends.

use burrow_sim::suite::run_suite_part;
use burrow_sim::Suite;

const CASES: u32 = 300;

#[test]
fn h2_connect_tunnels_under_faults_part_1() {
    run_suite_part(Suite::H2Connect, CASES, 0, 2);
}

#[test]
fn h2_connect_tunnels_under_faults_part_2() {
    run_suite_part(Suite::H2Connect, CASES, 1, 2);
}
