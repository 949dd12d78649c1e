//! Replays the `config_yaml` fuzz corpus and its saved regressions through the same entry
//! point the fuzz target calls (`burrow_sim::fuzz::config_yaml`), so every input found once
//! stays covered on stable `cargo test`.

use std::fs;
use std::path::Path;

use burrow_sim::fuzz::{config_yaml, replay_dir};

fn replay(dir: &str) -> usize {
    replay_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), config_yaml)
}

#[test]
fn config_yaml_fuzz_corpus() {
    assert!(replay("../fuzz/corpus/config_yaml") >= 20, "the seed corpus went missing");
}

#[test]
fn config_yaml_fuzz_regressions() {
    replay("../fuzz/regressions/config_yaml");
}

/// The target is meaningful: the example configs load and start a proxy, and a broken one
/// is refused (not silently accepted).
#[test]
fn config_yaml_target_accepts_and_refuses() {
    use burrow_core::config::Config;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/config_yaml");
    let example = fs::read_to_string(dir.join("example_default.yaml")).unwrap();
    assert!(Config::from_yaml(&example).is_ok());
    let broken = fs::read_to_string(dir.join("unknown_field.yaml")).unwrap();
    assert!(Config::from_yaml(&broken).is_err());
}
