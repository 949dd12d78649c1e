//! Replays the `http1_request_head` fuzz corpus and its saved regressions through the same entry
//! point the fuzz target calls, so every input found once stays covered on stable `cargo test`.

use std::fs;
use std::path::Path;

use burrow_core::http1::fuzz_request_head;

fn replay(dir: &str) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
            continue;
        }
        let data = fs::read(&path).unwrap();
        println!("{}", path.display());
        fuzz_request_head(&data);
        count += 1;
    }
    count
}

#[test]
fn http1_fuzz_corpus() {
    assert!(replay("../fuzz/corpus/http1_request_head") >= 12, "the seed corpus went missing");
}

#[test]
fn http1_fuzz_regressions() {
    replay("../fuzz/regressions/http1_request_head");
}
