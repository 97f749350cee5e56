//! Fuzz target `rest_bodies`: REST request bodies, topic names and history
//! queries through the real axum router, in process. The first byte picks
//! the route; the logic and the invariants are in
//! `fuzz/harness/rest_bodies.rs`; `server/tests/fuzz_corpus.rs` replays the
//! corpus on stable.
//!
//! Run (from `fuzz/`, nightly; one target at a time on a small machine):
//!
//! ```sh
//! nice -n 19 cargo +nightly fuzz run rest_bodies -- -max_total_time=600 -dict=dict/json.dict
//! cargo +nightly fuzz cmin rest_bodies    # keep the corpus small before committing
//! ```
//!
//! A crash is saved in `artifacts/rest_bodies/`; keep it there once fixed,
//! the replay test runs it too.

#![no_main]

#[path = "../harness/rest_bodies.rs"]
mod rest_bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| rest_bodies::run(data));
