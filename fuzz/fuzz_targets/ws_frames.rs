//! Fuzz target `ws_frames`: the raw bytes of a client's WebSocket stream,
//! decoded by the server's framing (`ws::codec`, checked against
//! tungstenite) and answered by the session's frame handler. The logic and
//! the invariants are in `fuzz/harness/ws_frames.rs`;
//! `server/tests/fuzz_corpus.rs` replays the corpus on stable.
//!
//! Run (from `fuzz/`, nightly; one target at a time on a small machine):
//!
//! ```sh
//! nice -n 19 cargo +nightly fuzz run ws_frames -- -max_total_time=600 -dict=dict/ws_frames.dict
//! cargo +nightly fuzz cmin ws_frames      # keep the corpus small before committing
//! ```
//!
//! A crash is saved in `artifacts/ws_frames/`; keep it there once fixed, the
//! replay test runs it too.

#![no_main]

#[path = "../harness/ws_frames.rs"]
mod ws_frames;

libfuzzer_sys::fuzz_target!(|data: &[u8]| ws_frames::run(data));
