//! Replays the `proxy_inputs` fuzz corpus and its saved regressions through the same entry
//! point the fuzz target calls (`burrow_sim::fuzz::proxy_inputs`): whole input sequences into
//! a `Proxy`, with the id, write, buffer and gauge invariants checked and a leak check once
//! every peer is gone. Every input found once stays covered on stable `cargo test`.

use std::fs;
use std::path::Path;

use burrow_sim::fuzz::proxy_inputs;

fn replay(dir: &str) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
            continue;
        }
        println!("{}", path.display());
        proxy_inputs(&fs::read(&path).unwrap());
        count += 1;
    }
    count
}

#[test]
fn proxy_inputs_fuzz_corpus() {
    assert!(replay("../fuzz/corpus/proxy_inputs") >= 12, "the seed corpus went missing");
}

#[test]
fn proxy_inputs_fuzz_regressions() {
    replay("../fuzz/regressions/proxy_inputs");
}
