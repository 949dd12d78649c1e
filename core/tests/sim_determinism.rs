//! The simulator's determinism check: a scenario is a pure function of its key. The same key
//! run twice yields the identical trace of inputs and outputs with their virtual times
//! (hashed), also when virtual time zero maps to a different `Instant`; different keys yield
//! different traces. What could break this, and why nothing does today, is documented in
//! `sim/src/lib.rs` ("Determinism").

use std::time::{Duration, Instant};

use burrow_sim::scenario::{run, run_at};
use burrow_sim::{Scenario, Suite};

fn keys() -> Vec<Scenario> {
    let mut out = Vec::new();
    for suite in [Suite::Connect, Suite::Http1, Suite::Upgrade] {
        for seed in [1u64, 7, 42, 0xdead_beef, 31_337, 9_000_000_001] {
            out.push(Scenario::from_seed(suite, seed));
        }
    }
    out
}

#[test]
fn same_seed_same_trace() {
    for scenario in keys() {
        let a = run(&scenario, false);
        let b = run(&scenario, false);
        assert_eq!(
            a.trace_hash,
            b.trace_hash,
            "{:?} {}: two runs differ; compare `BURROW_SIM_SEED={}` traces",
            scenario.suite,
            scenario.key(),
            scenario.key()
        );
        assert!(a.tally.inputs > 0 && a.tally.outputs > 0, "{}: an empty run", scenario.key());
    }
}

#[test]
fn the_instant_base_does_not_matter() {
    let base = Instant::now();
    for scenario in keys() {
        let a = run_at(&scenario, false, base);
        let b = run_at(&scenario, false, base + Duration::from_secs(86_400 * 3 + 17));
        assert_eq!(a.trace_hash, b.trace_hash, "{}: the output depends on the Instant base", scenario.key());
    }
}

#[test]
fn the_readable_trace_replays_line_for_line() {
    let scenario = Scenario::from_seed(Suite::Http1, 42);
    let a = run(&scenario, true);
    let b = run(&scenario, true);
    assert!(a.trace.len() > 20);
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.trace_hash, b.trace_hash);
}

#[test]
fn different_seeds_differ() {
    let hashes: std::collections::BTreeSet<u64> = keys().iter().map(|s| run(s, false).trace_hash).collect();
    assert_eq!(hashes.len(), keys().len(), "two different scenarios produced the same trace hash");
}
