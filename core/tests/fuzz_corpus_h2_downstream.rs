//! Replays the `h2_downstream` fuzz corpus and its saved regressions through the same entry
//! point the fuzz target calls (`burrow_sim::fuzz::h2_downstream`): raw bytes into a
//! downstream HTTP/2 connection, with the driver contract checked and a leak check once the
//! client is gone.

use std::fs;
use std::path::Path;

use burrow_sim::fuzz::{h2_downstream, h2_downstream_stats, replay_dir};

fn replay(dir: &str) -> usize {
    replay_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), h2_downstream)
}

#[test]
fn h2_downstream_fuzz_corpus() {
    assert!(replay("../fuzz/corpus/h2_downstream") >= 14, "the seed corpus went missing");
}

#[test]
fn h2_downstream_fuzz_regressions() {
    replay("../fuzz/regressions/h2_downstream");
}

/// The seeds are meaningful: each reaches the path it is named for.
#[test]
fn h2_downstream_seeds_reach_forwarding_tunnels_upgrades_and_the_reset_limit() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/h2_downstream");
    let stat = |seed: &str, name: &str| {
        let stats = h2_downstream_stats(&fs::read(dir.join(seed)).unwrap());
        stats.value(name).unwrap_or(0)
    };
    assert!(stat("get_direct", "http.front.downstream_rq_2xx") >= 1);
    assert!(stat("get_origin", "cluster.origin.upstream_rq_completed") >= 2);
    assert!(stat("get_origin_one_byte_reads", "cluster.origin.upstream_rq_completed") >= 1);
    assert!(stat("post_body", "cluster.origin.upstream_rq_completed") >= 1);
    assert!(stat("connect_tunnel", "cluster.target.upstream_cx_rx_bytes_total") >= 4);
    assert!(stat("connect_reset", "http.front.http2.rx_reset") >= 1);
    assert!(stat("websocket", "http.front.downstream_rq_1xx") >= 1);
    assert!(stat("bytestream", "http.front.downstream_cx_upgrades_total") >= 1);
    assert!(stat("many_resets", "http.front.downstream_rq_too_many_premature_resets") >= 1);
    assert!(stat("no_authority", "http.front.downstream_rq_4xx") >= 1);
}
