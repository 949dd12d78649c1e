//! The seeded suites under proptest, and the environment knobs every suite reads:
//!
//! - `BURROW_SIM_CASES=N`: scenarios per suite (default: each suite's CI figure);
//! - `BURROW_SIM_SEED=S`: replay one scenario (`seed` or `seed:clients:scale`, as a failure
//!   prints it) with its whole trace printed;
//! - `BURROW_SIM_STRICT=1`: fail on known-issue findings too;
//! - `BURROW_SIM_RNG_SEED=N`: the proptest generator's seed (default fixed, so CI is
//!   reproducible; vary it to explore new seeds).
//!
//! Every suite prints a summary line (scenarios, simulated hours, faults injected by kind);
//! run with `-- --nocapture` to see it.

use std::sync::Mutex;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestError, TestRunner};

use crate::report::Tally;
use crate::scenario::{run, Scenario, Suite};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

pub fn strict() -> bool {
    std::env::var("BURROW_SIM_STRICT").is_ok_and(|v| v.trim() == "1")
}

/// Runs one suite: `default_cases` scenarios unless the environment says otherwise.
pub fn run_suite(suite: Suite, default_cases: u32) {
    run_suite_part(suite, default_cases, 0, 1);
}

/// Runs part `part` of `parts` of a suite (so a suite's test functions share the cores):
/// its share of the cases, from its own generator seed. Replays and surveys run in part 0.
pub fn run_suite_part(suite: Suite, default_cases: u32, part: u32, parts: u32) {
    let replaying = std::env::var("BURROW_SIM_SEED").ok();
    let surveying = std::env::var("BURROW_SIM_SURVEY").is_ok_and(|v| v.trim() == "1");
    if let Some(key) = replaying {
        if part == 0 {
            let scenario = Scenario::parse(suite, &key)
                .unwrap_or_else(|| panic!("BURROW_SIM_SEED={key}: want `seed` or `seed:clients:scale`"));
            replay(&scenario);
        }
        return;
    }
    let total = env_u64("BURROW_SIM_CASES").map_or(default_cases, |n| n as u32);
    let cases = total / parts + u32::from(part < total % parts);
    let base_seed = env_u64("BURROW_SIM_RNG_SEED").unwrap_or(0xb0_5111 + suite as u64);
    let rng_seed = base_seed.wrapping_add(u64::from(part) << 32);
    if surveying {
        if part == 0 {
            survey(suite, total, base_seed);
        }
        return;
    }
    let config = Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(rng_seed),
        max_shrink_iters: 200,
        ..Config::default()
    };
    let total = Mutex::new(Tally::default());
    let started = std::time::Instant::now();
    let strategy = (any::<u64>().no_shrink(), 1u32..=8, 1u32..=100);
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |(seed, clients, scale)| {
        let scenario = Scenario { suite, seed, clients, scale };
        let outcome = run(&scenario, false);
        total.lock().unwrap().add(&outcome.tally);
        let mut problems = outcome.notes.violations;
        let strict = strict();
        problems.extend(
            outcome
                .notes
                .findings
                .into_iter()
                .filter(|(c, _)| strict || c.fixed())
                .map(|(c, f)| format!("{}: {f}", c.name())),
        );
        if problems.is_empty() {
            return Ok(());
        }
        problems.truncate(12);
        Err(TestCaseError::fail(format!(
            "scenario {} ({} violations):\n  {}",
            scenario.key(),
            problems.len(),
            problems.join("\n  ")
        )))
    });
    let tally = total.into_inner().unwrap();
    println!(
        "sim {} (part {}/{parts}): {tally}\n  wall time {:.1}s (rng seed {rng_seed})",
        suite.name(),
        part + 1,
        started.elapsed().as_secs_f64()
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, (seed, clients, scale))) => {
            let key = Scenario { suite, seed, clients, scale }.key();
            panic!(
                "sim {}: minimal failing scenario {key}\n{reason}\nreplay with its trace:\n  BURROW_SIM_SEED={key} cargo test -p burrow-core --test sim_{} -- --nocapture",
                suite.name(),
                suite.name()
            );
        }
        Err(e) => panic!("sim {}: {e}", suite.name()),
    }
}

/// `BURROW_SIM_SURVEY=1`: runs `cases` scenarios without stopping or shrinking and prints
/// every failing one with its first violation (for triage), then fails if any did.
fn survey(suite: Suite, cases: u32, rng_seed: u64) {
    let mut rng = crate::rng::Rng::new(rng_seed);
    let mut total = Tally::default();
    let mut failed = 0;
    let mut examples: std::collections::BTreeMap<&'static str, Vec<String>> = Default::default();
    for _ in 0..cases {
        let scenario = Scenario::from_seed(suite, rng.next_u64());
        let outcome = run(&scenario, false);
        total.add(&outcome.tally);
        for (class, what) in &outcome.notes.findings {
            let seen = examples.entry(class.name()).or_default();
            if seen.len() < 3 && !seen.iter().any(|s| s.starts_with(&scenario.key())) {
                seen.push(format!("{} {}", scenario.key(), what.chars().take(160).collect::<String>()));
            }
        }
        let mut problems = outcome.notes.violations;
        if strict() {
            problems.extend(outcome.notes.findings.into_iter().map(|(c, f)| format!("{}: {f}", c.name())));
        }
        if let Some(first) = problems.first() {
            failed += 1;
            println!("FAIL {} ({} violations): {first}", scenario.key(), problems.len());
        }
    }
    println!("sim {} survey: {failed} of {cases} failed\n  {total}", suite.name());
    for (class, keys) in &examples {
        for key in keys {
            println!("  finding {class}: {key}");
        }
    }
    assert_eq!(failed, 0, "{failed} scenarios failed");
}

/// Runs one scenario with its trace printed; panics on violations.
pub fn replay(scenario: &Scenario) {
    let outcome = run(scenario, true);
    for line in &outcome.trace {
        println!("{line}");
    }
    println!(
        "--- scenario {} ({}) trace hash {:#018x}",
        scenario.key(),
        scenario.suite.name(),
        outcome.trace_hash
    );
    println!("{}", outcome.summary);
    for (class, f) in &outcome.notes.findings {
        println!("finding {}: {f}", class.name());
    }
    for v in &outcome.notes.violations {
        println!("VIOLATION {v}");
    }
    let findings = if strict() { outcome.notes.findings.len() } else { 0 };
    assert!(
        outcome.notes.violations.is_empty() && findings == 0,
        "scenario {} broke {} invariants (see above)",
        scenario.key(),
        outcome.notes.violations.len() + findings
    );
}
