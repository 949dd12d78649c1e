//! Raw bytes into a downstream HTTP/2 connection of the core, after the client preface, in
//! reads the input sizes; upstreams answer as simple peers. The core must never panic, must
//! keep the driver contract, and nothing may be left once the client is gone. See
//! `burrow_sim::fuzz::h2_downstream`. Corpus: `corpus/h2_downstream`; crashes worth keeping go
//! to `regressions/h2_downstream` (both replayed by `core/tests/fuzz_corpus_h2_downstream.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    burrow_sim::fuzz::h2_downstream(data);
});
