//! Replays the `http1_request_head` fuzz corpus and its saved regressions through the same entry
//! point the fuzz target calls, so every input found once stays covered on stable `cargo test`.

use std::path::Path;

use burrow_core::http1::fuzz_request_head;
use burrow_sim::fuzz::replay_dir;

fn replay(dir: &str) -> usize {
    replay_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), fuzz_request_head)
}

#[test]
fn http1_fuzz_corpus() {
    assert!(replay("../fuzz/corpus/http1_request_head") >= 12, "the seed corpus went missing");
}

#[test]
fn http1_fuzz_regressions() {
    replay("../fuzz/regressions/http1_request_head");
}
