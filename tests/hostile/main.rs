//! Hostile inputs (`tests/common/hostile.rs` makes them): every class of file that once made
//! ckpt panic, hang or balloon, in every format, through every entry point, each run in a child
//! process so that a panic, a hang or a blow-up is seen rather than suffered. Each must be a
//! typed error or a correct result, within the memory bound.
//!
//! The growth of time and memory with the input's size is shown by `cargo bench --bench
//! hostile`, which runs the growing classes at several sizes; this test runs each once.

#[path = "../common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::entries::{self, CONTROL_VALUES};
use common::hostile::{self, Case, Expect};
use common::probe::{self, Limits, Outcome, Probe};

/// The variables a child finds its work in.
const ENTRY: &str = "CKPT_HOSTILE_ENTRY";
const PATH: &str = "CKPT_HOSTILE_PATH";

/// Generous limits for debug builds on a busy 2-core machine: the bound that matters is the
/// memory one, checked against each case's input below.
const LIMITS: Limits = Limits {
    timeout: Duration::from_secs(120),
    memory: 4 << 30,
};

/// Runs `entry` on `path` in a child: this test again, told what to do.
fn child(test: &str, entry: &str, path: &Path) -> Probe {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ENTRY, entry)
        .env(PATH, path);
    probe::spawn(command, LIMITS)
}

/// In a child: does the work the parent asked for, and exits.
fn if_child() {
    if let (Some(entry), Some(path)) = (std::env::var_os(ENTRY), std::env::var_os(PATH)) {
        let entry = entry.to_string_lossy().into_owned();
        probe::report(move || entries::run(&entry, Path::new(&path), 1));
    }
}

/// What is wrong with how `probe` handled `case` through `entry`, if anything.
fn judge(case: &Case, entry: &str, probe: &Probe) -> Option<String> {
    let bound = hostile::memory_bound(case.total_len()) as u64;
    // The mapped input itself is resident too while it is read: it is not a parsing
    // structure, so it does not count against the bound.
    let growth = probe.peak_growth().saturating_sub(case.total_len() as u64);
    if growth > bound {
        return Some(format!(
            "peak memory grew {} MiB for {} bytes of input (bound {} MiB)",
            growth >> 20,
            case.total_len(),
            bound >> 20
        ));
    }
    let loads_into_tiny = matches!(entry, "load_from" | "load_state_dict");
    match (&probe.outcome, case.expect) {
        (Outcome::Panic(_) | Outcome::Timeout | Outcome::OverMemory | Outcome::Died(_), _) => {
            Some(format!("{:?}", probe.outcome))
        }
        (Outcome::Ok(got), Expect::Valid) if loads_into_tiny && got != CONTROL_VALUES => {
            Some(format!("loaded wrong values: {}", clip(got)))
        }
        (Outcome::Err(e), Expect::Valid) => Some(format!("a valid file was refused: {}", clip(e))),
        (Outcome::Ok(got), Expect::Error(_)) => Some(format!("accepted: {}", clip(got))),
        (Outcome::Err(e), Expect::Error(Some(text))) if !e.to_lowercase().contains(text) => {
            Some(format!("the error does not say {text:?}: {}", clip(e)))
        }
        // A file's error names it (or the shard at fault); a strict load's names the keys.
        (Outcome::Err(e), _) if !entry.starts_with("load_state_dict") && !names_a_file(case, e) => {
            Some(format!("the error names no file: {}", clip(e)))
        }
        _ => None,
    }
}

/// At most 300 characters of a message: a did-you-mean error lists hundreds of keys.
fn clip(message: &str) -> String {
    match message.char_indices().nth(300) {
        Some((at, _)) => format!("{}…", &message[..at]),
        None => message.to_owned(),
    }
}

/// Whether `error` names the case's file or one of its siblings.
fn names_a_file(case: &Case, error: &str) -> bool {
    std::iter::once(&case.file_name)
        .chain(case.siblings.iter().map(|(name, _)| name))
        .any(|name| error.contains(name.as_str()))
}

/// Writes every case at scale 1 under `dir`, each in a folder of its own.
fn write_cases(dir: &Path) -> Vec<(Case, PathBuf)> {
    hostile::cases(1)
        .into_iter()
        .enumerate()
        .map(|(i, case)| {
            let path = case
                .write_to(&dir.join(i.to_string()))
                .expect("the case is written");
            (case, path)
        })
        .collect()
}

#[test]
fn no_hostile_file_panics_hangs_or_balloons() {
    if_child();
    let test = common::test_name(module_path!(), "no_hostile_file_panics_hangs_or_balloons");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut failures = Vec::new();
    let mut runs = 0;
    for (case, path) in write_cases(dir.path()) {
        for entry in entries::entries_for(&case) {
            let probe = child(&test, entry, &path);
            runs += 1;
            if let Some(wrong) = judge(&case, entry, &probe) {
                failures.push(format!(
                    "{} / {} / {} via {entry}: {wrong}",
                    case.class, case.format, case.name
                ));
            }
        }
    }
    assert!(runs > 100, "only {runs} runs: the generator lost its cases");
    assert!(
        failures.is_empty(),
        "{} of {runs} runs:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn endless_and_special_files_are_refused_at_once() {
    if_child();
    let test = common::test_name(
        module_path!(),
        "endless_and_special_files_are_refused_at_once",
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut failures = Vec::new();
    for special in hostile::special_paths(dir.path()).expect("the special files are made") {
        let (what, culprit) = (special.what, special.culprit.display().to_string());
        for entry in entries::ENTRIES {
            let probe = child(&test, entry, &special.path);
            let refused = matches!(&probe.outcome, Outcome::Err(e) if e.contains(&culprit));
            // Nothing is read: no time, and no memory to speak of.
            if !refused || probe.secs > 5.0 || probe.peak_growth() > 16 << 20 {
                failures.push(format!(
                    "{what} via {entry}: {:?} after {:.2} s",
                    probe.outcome, probe.secs
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn zero_dimensions_beside_huge_ones_are_refused_everywhere() {
    for shape in hostile::zero_dim_shapes() {
        let dtype: ckpt::DType = shape.dtype.parse().expect("a dtype name");
        let dims: Vec<usize> = shape.shape.iter().map(|&d| d as usize).collect();
        let err = ckpt::Tensor::zeros(dtype, &dims).err();
        assert!(
            err.is_some(),
            "{}: Tensor::zeros accepted {dims:?}",
            shape.label
        );
    }
}

/// The generator keeps its promises: the growing classes grow linearly, and its checksum is
/// zip's.
mod generator {
    use super::hostile;

    #[test]
    fn crc32_is_zips() {
        assert_eq!(hostile::crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn growing_cases_grow_linearly() {
        let (one, two) = (hostile::growing_cases(1), hostile::growing_cases(2));
        assert_eq!(one.len(), two.len());
        for (a, b) in one.iter().zip(&two) {
            let ratio = b.total_len() as f64 / a.total_len() as f64;
            assert!(
                (1.8..2.2).contains(&ratio),
                "{} / {}: grew {ratio}×",
                a.class,
                a.name
            );
        }
    }
}

/// The `dcp_metadata` fuzz target's first seed is the control checkpoint's `.metadata` as the
/// generator makes it today, so that fuzzing starts from a file that loads. Set
/// `CKPT_REGENERATE=1` to rewrite it after a deliberate change to the generator.
#[test]
fn the_dcp_fuzz_seed_is_the_control_metadata() {
    let (metadata, _) = hostile::dcp_control_files();
    let seed =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/dcp_metadata/tiny.metadata");
    if std::env::var_os("CKPT_REGENERATE").is_some() {
        std::fs::write(&seed, &metadata).expect("the seed is written");
    }
    assert!(
        std::fs::read(&seed).expect("the seed exists") == metadata,
        "{} is stale: run with CKPT_REGENERATE=1",
        seed.display()
    );
}
