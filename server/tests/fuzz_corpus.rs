//! Replays the fuzz corpus on stable Rust: every input the fuzzer kept (and
//! every crash it found, once fixed) goes through the same harness as the
//! fuzz targets in `fuzz/`, so `cargo test -p pubsub-server` catches a
//! regression without nightly or cargo-fuzz.
//!
//! The corpus lives in `fuzz/corpus/<target>/` and crashes in
//! `fuzz/artifacts/<target>/`; growing it is described at the top of each
//! target in `fuzz/fuzz_targets/`.

#[path = "../../fuzz/harness/rest_bodies.rs"]
mod rest_bodies;
#[path = "../../fuzz/harness/ws_frames.rs"]
mod ws_frames;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir`, sorted; none when it does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("read a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every corpus input (which must exist) and every kept crash of
/// `target`, and reports all the inputs that failed, not just the first.
fn replay(target: &str, run: fn(&[u8])) {
    let corpus = files_in(&fuzz_dir().join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target} is missing or empty: the replay would prove nothing"
    );
    let artifacts = files_in(&fuzz_dir().join("artifacts").join(target));
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&artifacts) {
        let data = std::fs::read(path).expect("read a corpus file");
        if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} {target} inputs failed (panic messages above):\n{}",
        failed.len(),
        corpus.len() + artifacts.len(),
        failed.join("\n")
    );
}

#[test]
fn ws_frames_corpus() {
    replay("ws_frames", ws_frames::run);
}

#[test]
fn rest_bodies_corpus() {
    replay("rest_bodies", rest_bodies::run);
}
