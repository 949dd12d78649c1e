//! Simulator scenarios that once found a core bug, replayed by key on every `cargo test`:
//! each must run without a violation and without the signature of any finding marked fixed.
//! Add a scenario here (suite, `seed:clients:scale`, what it found) with the fix it checks.
//! Replay one with its trace: `BURROW_SIM_SEED=<key> cargo test -p burrow-core --test
//! sim_<suite> -- --nocapture`.

use burrow_sim::scenario::run;
use burrow_sim::{Scenario, Suite};

const REGRESSIONS: &[(Suite, &str, &str)] = &[
    (
        Suite::Connect,
        "7448520501606981136:3:52",
        "early bytes read with a CONNECT head past the limit while resolving",
    ),
    (Suite::Http1, "11324189567746360383:6:60", "408 the moment a long response ended, to a head read ahead"),
    (Suite::Http1, "7369507539236511982:7:84", "pipelined head timed from before the previous stream ended"),
    (
        Suite::Upgrade,
        "8994514618538099219:5:48",
        "408 the moment a long-pending request ended, to a head read ahead",
    ),
    (
        Suite::Upgrade,
        "11430439315267785703:8:36",
        "pipelined head timed from before the previous stream ended",
    ),
    (
        Suite::Http1,
        "7704205102811630249:8:93",
        "stream idle timeout while a slow client drains is not a paused pool",
    ),
    (
        Suite::Http1,
        "6439793814680564863:7:56",
        "room freed on one host never reached another host's pending request",
    ),
    (
        Suite::Http1,
        "10519021689744041665:6:54",
        "a host with no connection starved behind another host's idle one",
    ),
    (Suite::Upgrade, "1998051697833150988:1:93", "bytes after a refused upgrade cut the refusal with a 413"),
    (Suite::Upgrade, "12655377121676542516:3:54", "bytes after a refused upgrade cut the refusal with a 413"),
    (Suite::Connect, "7708531109215029465:6:7", "a 408 sent during a stall, arriving after it"),
    (
        Suite::Upgrade,
        "13209030629184750696:6:72",
        "a retired connection's close freed its unit and woke no pending request",
    ),
    (
        Suite::Upgrade,
        "15185975770027416921:5:3",
        "a host whose connection was upgraded got another past max_connections",
    ),
    (
        Suite::Upgrade,
        "7432127463409275595:7:97",
        "the switch to a tunnel resumed a client whose early bytes filled the upstream queue",
    ),
];

#[test]
fn scenarios_that_found_bugs_stay_fixed() {
    let mut failures = Vec::new();
    for (suite, key, what) in REGRESSIONS {
        let scenario = Scenario::parse(*suite, key).expect("a scenario key");
        let outcome = run(&scenario, false);
        let mut problems = outcome.notes.violations;
        problems.extend(
            outcome
                .notes
                .findings
                .iter()
                .filter(|(c, _)| c.fixed())
                .map(|(c, f)| format!("{}: {f}", c.name())),
        );
        if !problems.is_empty() {
            failures.push(format!("{} {key} ({what}):\n  {}", suite.name(), problems.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
