//! Bytes become a sequence of driver inputs (accepts, reads, half-closes, resets, connect
//! results, flushes, DNS answers, timeouts, shutdown) into one `Proxy` on a fixed config; the
//! core must never panic and must keep the id, write, buffer and gauge invariants, and once
//! every peer is gone nothing may be left open. See `burrow_sim::fuzz::proxy_inputs`.
//! Corpus: `corpus/proxy_inputs`; crashes worth keeping go to `regressions/proxy_inputs` (both
//! replayed by `core/tests/fuzz_corpus_proxy_inputs.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    burrow_sim::fuzz::proxy_inputs(data);
});
