//! The README's commands do what it says when pasted, and it lists every metric herald exports.
//!
//! The story: `cargo run --release`, the first command of the README, failed ("could not
//! determine which binary to run"); its load-generator example started `herald-bench` right
//! after `herald &` and failed about half the time with connections refused, and wrote
//! `report.json` into the repository; and the metrics were summed up in one sentence, without
//! names, types or labels.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use common::*;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The first ```sh block after the heading `heading`.
fn sh_block_after(text: &str, heading: &str) -> String {
    let section = &text[text.find(heading).unwrap_or_else(|| panic!("no {heading}"))..];
    let start = section.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let len = section[start..].find("```").expect("the block ends");
    section[start..start + len].to_owned()
}

#[test]
fn cargo_run_starts_herald() {
    assert!(
        sh_block_after(&readme(), "## Run").contains("cargo run --release\n"),
        "the README's run command changed; check this test still asks the right question"
    );
    // `cargo run` without `--bin` runs the package's `default-run` binary; with two binaries
    // and none named, it refuses.
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let package = &meta["packages"][0];
    assert_eq!(package["name"], "herald");
    assert_eq!(package["default_run"], "herald");
}

/// The block is run as written but for three things a test must change: the build (the test's
/// build already made both binaries), where the binaries are, and the ports (tests run side by
/// side). It runs in an empty directory standing for the repository, which must stay empty.
#[test]
fn the_load_generator_example_runs_as_pasted() {
    let block = sh_block_after(&readme(), "### The load generator");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_herald")).parent().unwrap();
    // herald-bench is another package of the workspace: `cargo test` at the root builds it (both
    // packages are default members), `cargo test -p herald` alone does not.
    assert!(
        bin_dir.join("herald-bench").is_file(),
        "no herald-bench beside herald in {}: run the tests from the workspace root without -p, \
         or `cargo build --release -p herald-bench` first",
        bin_dir.display()
    );
    let script = block
        .lines()
        .filter(|l| !l.starts_with("cargo build"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("target/release/", &format!("{}/", bin_dir.display()))
        .replace("7100", &free_port().to_string())
        .replace("7101", &free_port().to_string());
    let work = tempdir("work");
    let tmp = tempdir("tmp");
    // Not part of the block: whatever it leaves running in the background is stopped with the
    // shell, and its output goes to a file, so that a block that forgets its server fails
    // rather than hangs.
    const CLEANUP: &str = "trap 'st=$?; kill $(jobs -p) 2>/dev/null || true; exit $st' EXIT";
    let script = format!("{CLEANUP}\n{script}");
    let log = tmp.join("script.log");
    let status = Command::new("bash")
        .args(["-e", "-c", &script])
        .current_dir(&work)
        .env("TMPDIR", &tmp)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(tmp.join("script.err")).unwrap())
        .status()
        .expect("bash runs");
    assert!(
        status.success(),
        "{script}\n{}",
        std::fs::read_to_string(tmp.join("script.err")).unwrap()
    );
    let left: Vec<_> = std::fs::read_dir(&work).unwrap().collect();
    assert!(left.is_empty(), "written into the tree: {left:?}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(tmp.join("herald-report.json")).unwrap()).unwrap();
    assert!(report.is_object(), "{report}");
    let _ = std::fs::remove_dir_all(work.parent().unwrap());
}

/// A fresh directory under the system's temporary one.
fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("herald-readme-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every metric `/metrics` exports has a row in the README's table, with its type and labels.
#[test]
fn every_metric_is_in_the_readme() {
    let srv = start_server();
    let (status, text) = get(&srv, "/metrics");
    assert_eq!(status, 200);
    let readme = readme();
    let table = &readme[readme
        .find("| metric | type | labels |")
        .expect("the metrics table")..];
    let table: Vec<&str> = table.lines().take_while(|l| l.starts_with('|')).collect();
    let mut names = 0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        // Labels as the samples carry them: `name{a="..",b=".."} v`.
        let labels: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
            .flat_map(|l| {
                l.split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, _)| k)
            })
            .collect();
        let row = table
            .iter()
            .find(|row| row.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("no row for {name} in the README's metrics table"));
        assert!(
            row.contains(&format!("| {kind} |")),
            "{name} is a {kind}: {row}"
        );
        for label in labels {
            assert!(
                row.contains(&format!("`{label}`")),
                "{name} has {label}: {row}"
            );
        }
        names += 1;
    }
    assert!(names > 30, "{text}");
}
