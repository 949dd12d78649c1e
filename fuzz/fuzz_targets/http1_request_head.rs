//! The bytes a client sends, through head parsing, framing and body decoding.
//! Corpus: `corpus/http1_request_head`; crashes worth keeping go to `regressions/http1_request_head`
//! (both replayed by `core/tests/http1_fuzz_corpus.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    burrow_core::http1::fuzz_request_head(data);
});
