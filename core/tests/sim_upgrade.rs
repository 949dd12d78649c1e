//! The simulator's upgrade suite: HTTP/1.1 upgrades (`websocket`) through the pool: a 101
//! then a tunnel both ways (ending with its upstream), or a refusal that ends the connection,
//! with early data, half-closes and resets, under seeded faults. Two halves share the cores.
//! See `sim/src/lib.rs` ("Running") for `BURROW_SIM_CASES`, `BURROW_SIM_SEED` and friends.

use burrow_sim::suite::run_suite_part;
use burrow_sim::Suite;

const CASES: u32 = 320;

#[test]
fn upgrades_under_faults_part_1() {
    run_suite_part(Suite::Upgrade, CASES, 0, 2);
}

#[test]
fn upgrades_under_faults_part_2() {
    run_suite_part(Suite::Upgrade, CASES, 1, 2);
}
