//! Replays the committed fuzzing corpora (`fuzz/corpus/<target>/`) through the same entry points
//! the fuzz targets call, on stable Rust, so an input that once passed and now panics fails the
//! test suite and not only a fuzzing run. The corpora are the inputs libFuzzer kept for the
//! coverage they reach, minimised with `cargo fuzz cmin`; see README "Fuzzing".

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use herald::fuzzing;

/// Runs `entry` on every file of `fuzz/corpus/<target>` and fails naming each input that
/// panicked. An empty or missing corpus fails too: replaying nothing would pass forever.
fn replay(target: &str, entry: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus of {target}: {e}"))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus of {target} is empty");
    let mut failed = Vec::new();
    for file in &files {
        let data = fs::read(file).unwrap();
        if panic::catch_unwind(AssertUnwindSafe(|| entry(&data))).is_err() {
            failed.push(file.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} {target} inputs panicked: {failed:?}",
        failed.len(),
        files.len()
    );
    println!("{target}: {} inputs replayed", files.len());
}

macro_rules! corpus {
    ($($target:ident),* $(,)?) => {
        /// The targets replayed below.
        const REPLAYED: &[&str] = &[$(stringify!($target)),*];
        $(
            #[test]
            fn $target() {
                replay(stringify!($target), fuzzing::$target);
            }
        )*
    };
}

corpus!(
    frame_decoder,
    handshake,
    inflate,
    raw_protocol,
    control_http,
    engineio,
    socketio,
    token,
    rooms,
    core_commands,
    core_worker,
    proxy_protocol,
    real_ip,
);

/// Every fuzz target has a corpus replayed here: a target added to `fuzz/Cargo.toml` without
/// one fails this test.
#[test]
fn every_target_is_replayed() {
    let manifest =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml")).unwrap();
    let targets: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|name| *name != "herald-fuzz")
        .collect();
    let missing: Vec<&str> = targets
        .iter()
        .copied()
        .filter(|t| !REPLAYED.contains(t))
        .collect();
    assert!(missing.is_empty(), "targets without a replay: {missing:?}");
    assert_eq!(targets.len(), REPLAYED.len(), "{targets:?}");
}
