//! The simulator's upgrade suite: HTTP/1.1 upgrades (`websocket`) through the pool: 101 then
//! a tunnel both ways, or a refusal that ends the connection, with early data, half-closes
//! and resets, under seeded faults. See `sim/src/suite.rs` for the environment knobs.

use burrow_sim::suite::run_suite;
use burrow_sim::Suite;

#[test]
fn upgrades_under_faults() {
    run_suite(Suite::Upgrade, 160);
}
