//! The simulator's TCP proxy suite: raw TCP clients through TCP proxy listeners, forwarded to
//! echo targets over connections of the proxy's own, or tunnelled through HTTP/1.1 CONNECT
//! (`tunneling_config`) to terminators that refuse, hang up or answer late, with
//! `max_connect_attempts`, idle timeouts and maximum durations, under seeded faults. Two
//! halves share the cores. See `sim/src/lib.rs` ("Running") for `BURROW_SIM_CASES`,
//! `BURROW_SIM_SEED` and friends.

use burrow_sim::suite::run_suite_part;
use burrow_sim::Suite;

const CASES: u32 = 400;

#[test]
fn tcp_proxy_under_faults_part_1() {
    run_suite_part(Suite::TcpProxy, CASES, 0, 2);
}

#[test]
fn tcp_proxy_under_faults_part_2() {
    run_suite_part(Suite::TcpProxy, CASES, 1, 2);
}

/// The suite's runs are pure functions of their keys too (its loopback relay and terminators
/// included): run twice, and with virtual time zero at another `Instant`, a scenario gives
/// the same trace.
#[test]
fn tcp_proxy_scenarios_are_deterministic() {
    use std::time::{Duration, Instant};

    use burrow_sim::scenario::run_at;
    use burrow_sim::Scenario;

    let base = Instant::now();
    for seed in [1u64, 7, 42, 0xdead_beef, 31_337, 9_000_000_001] {
        let scenario = Scenario::from_seed(Suite::TcpProxy, seed);
        let a = run_at(&scenario, false, base);
        let b = run_at(&scenario, false, base);
        let c = run_at(&scenario, false, base + Duration::from_secs(86_400 * 3 + 17));
        assert!(a.tally.inputs > 0 && a.tally.outputs > 0, "{}: an empty run", scenario.key());
        assert_eq!(a.trace_hash, b.trace_hash, "{}: two runs differ", scenario.key());
        assert_eq!(a.trace_hash, c.trace_hash, "{}: the output depends on the Instant base", scenario.key());
    }
}
