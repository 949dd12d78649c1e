//! Replays the `proxy_inputs` fuzz corpus and its saved regressions through the same entry
//! point the fuzz target calls (`burrow_sim::fuzz::proxy_inputs`): whole input sequences into
//! a `Proxy`, with the id, write, buffer and gauge invariants checked and a leak check once
//! every peer is gone. Every input found once stays covered on stable `cargo test`.
//!
//! To triage one input (a crash libFuzzer wrote): `BURROW_FUZZ_FILE=path BURROW_FUZZ_TRACE=1
//! cargo test -p burrow-core --test fuzz_corpus_proxy_inputs -- --nocapture` replays that file
//! alone with every input and output printed.

use std::fs;
use std::path::Path;

use burrow_sim::fuzz::{proxy_inputs, replay_dir};

fn replay(dir: &str) -> usize {
    replay_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), proxy_inputs)
}

#[test]
fn proxy_inputs_fuzz_corpus() {
    if let Ok(file) = std::env::var("BURROW_FUZZ_FILE") {
        return proxy_inputs(&fs::read(&file).unwrap_or_else(|e| panic!("{file}: {e}")));
    }
    assert!(replay("../fuzz/corpus/proxy_inputs") >= 12, "the seed corpus went missing");
}

#[test]
fn proxy_inputs_fuzz_regressions() {
    replay("../fuzz/regressions/proxy_inputs");
}

/// The seeds are meaningful: each reaches the machine it is named for.
#[test]
fn proxy_inputs_seeds_reach_tunnels_pools_and_upgrades() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/proxy_inputs");
    let stat = |seed: &str, name: &str| {
        let stats = burrow_sim::fuzz::proxy_inputs_stats(&fs::read(dir.join(seed)).unwrap());
        stats.value(name).unwrap_or(0)
    };
    assert!(stat("get_through_pool", "cluster.origin.upstream_rq_completed") >= 1);
    assert!(stat("connect_ip_tunnel", "cluster.odst.upstream_cx_rx_bytes_total") >= 1);
    assert!(stat("connect_name_resolves", "cluster.odst.upstream_cx_total") >= 1);
    assert!(stat("connect_name_fails", "cluster.odst.upstream_cx_none_healthy") >= 1);
    assert!(stat("upgrade_101", "http.front.downstream_cx_upgrades_total") >= 1);
    assert!(stat("direct_and_admin", "http.front.downstream_rq_2xx") >= 1);
}
