//! The simulator's CONNECT suite: terminated CONNECT over HTTP/1.1 through the whole core,
//! with early data, half-closes, resets, refused and never-completing connects, connect
//! timeouts, DNS names (failing, slow, never answered) and breakers, under seeded faults.
//! See `sim/src/suite.rs` for `BURROW_SIM_CASES`, `BURROW_SIM_SEED` and friends.

use burrow_sim::suite::run_suite;
use burrow_sim::Suite;

#[test]
fn connect_tunnels_under_faults() {
    run_suite(Suite::Connect, 160);
}
