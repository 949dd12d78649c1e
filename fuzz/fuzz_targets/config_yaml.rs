//! Any UTF-8 text through the config loader: it must never panic, a config it accepts must
//! start a proxy, and a refusal must say what is wrong.
//! Corpus: `corpus/config_yaml`; crashes worth keeping go to `regressions/config_yaml` (both
//! replayed by `core/tests/fuzz_corpus_config_yaml.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    burrow_sim::fuzz::config_yaml(data);
});
