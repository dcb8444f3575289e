//! The growth of time and memory with the size of a hostile input (issue 12): each growing
//! class of `tests/common/hostile.rs`, in every format, through every entry point, at scales
//! 2, 4, 8 and 16 (large enough to leave the caches), each run in a child process that
//! reports its time and peak memory.
//!
//! ```text
//! cargo bench --bench hostile                       # scales 2, 4, 8, 16
//! CKPT_HOSTILE_SCALES=1,2,4,8,16,32 cargo bench --bench hostile
//! CKPT_HOSTILE_REPEAT=1 cargo bench --bench hostile # one run per row, not the best of 3
//! CKPT_HOSTILE_FILTER=pt-zip cargo bench --bench hostile # the cases whose class, format or name say so
//! ```
//!
//! Per row it prints the input's size, the time, the peak memory the work added and the bound
//! it must stay under (8 × the input + 64 MiB, beside the input's own mapping) and, per
//! doubling of the input, how much the time grew (linear work doubles; quadratic work grows
//! 4×); per class, the exponent of time in input size fitted over all scales. It ends with the
//! rows that broke the memory bound and the classes whose exponent is above 1.5, and fails if
//! any did. Anchor: the time to read the same number of bytes from the page cache.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::entries;
use common::hostile::{self, Case};
use common::probe::{self, Limits, Outcome, Probe};

const ENTRY: &str = "CKPT_HOSTILE_ENTRY";
const PATH: &str = "CKPT_HOSTILE_PATH";
const SCALE: &str = "CKPT_HOSTILE_SCALE";

const LIMITS: Limits = Limits {
    timeout: Duration::from_secs(60),
    memory: 8 << 30,
};

/// The exponent of time in input size, fitted over the scales, above which work is not
/// linear: linear work has 1, quadratic 2. (Per doubling, single steps are too noisy to judge
/// on a busy machine: one step of linear work may show 3× where the next shows 1.5×.)
const FASTER_THAN_LINEAR: f64 = 1.5;

/// Below this a time is mostly process noise, and its growth says nothing.
const MEASURABLE: f64 = 0.020;

fn main() {
    if let (Some(entry), Some(path)) = (std::env::var_os(ENTRY), std::env::var_os(PATH)) {
        let scale = std::env::var(SCALE)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        let entry = entry.to_string_lossy().into_owned();
        probe::report(move || entries::run(&entry, Path::new(&path), scale));
    }
    let scales: Vec<usize> = std::env::var("CKPT_HOSTILE_SCALES")
        .unwrap_or_else(|_| "2,4,8,16".to_owned())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("CKPT_HOSTILE_SCALES: numbers, comma-separated")
        })
        .collect();
    let repeat: usize = std::env::var("CKPT_HOSTILE_REPEAT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().expect("a temporary directory");
    println!(
        "{:<14} {:<12} {:<44} {:<22} {:>5} {:>10} {:>9} {:>9} {:>9} {:>7} {:>9}",
        "class",
        "format",
        "case",
        "entry",
        "scale",
        "input",
        "time",
        "peak+",
        "bound",
        "growth",
        "read"
    );
    let mut broken = Vec::new();
    let per_scale: Vec<Vec<Case>> = scales.iter().map(|&s| hostile::growing_cases(s)).collect();
    let filter = std::env::var("CKPT_HOSTILE_FILTER").unwrap_or_default();
    for i in 0..per_scale[0].len() {
        let first = &per_scale[0][i];
        let label = format!("{} {} {}", first.class, first.format, first.name);
        if !label.contains(&filter) {
            continue;
        }
        for entry in entries::entries_for(first) {
            let mut previous: Option<f64> = None;
            let mut points = Vec::new();
            for (cases, &scale) in per_scale.iter().zip(&scales) {
                let case = &cases[i];
                let path = case
                    .write_to(&dir.path().join(format!("{i}-{scale}")))
                    .expect("the case is written");
                let probe = best_of(repeat, entry, &path, scale);
                let read = read_anchor(&path, case);
                let bound = hostile::memory_bound(case.total_len()) as u64;
                let added = probe.peak_growth().saturating_sub(case.total_len() as u64);
                let growth = previous
                    .filter(|&p| p >= MEASURABLE || probe.secs >= MEASURABLE)
                    .map(|p| probe.secs / p.max(1e-6));
                previous = Some(probe.secs);
                points.push((case.total_len() as f64, probe.secs));
                println!(
                    "{:<14} {:<12} {:<44} {:<22} {:>5} {:>10} {:>8.3}s {:>9} {:>9} {:>7} {:>8.4}s",
                    case.class,
                    case.format,
                    truncate(&case.name, 44),
                    entry,
                    scale,
                    bytes(case.total_len() as u64),
                    probe.secs,
                    bytes(added),
                    bytes(bound),
                    growth.map_or("-".to_owned(), |g| format!("{g:.2}×")),
                    read,
                );
                let what = format!(
                    "{} / {} / {} via {entry} at scale {scale}",
                    case.class, case.format, case.name
                );
                if let Some(wrong) = wrong(&probe) {
                    broken.push(format!("{what}: {wrong}"));
                }
                if added > bound {
                    broken.push(format!(
                        "{what}: {} over the bound of {}",
                        bytes(added),
                        bytes(bound)
                    ));
                }
            }
            if let Some(exponent) = exponent(&points) {
                println!("{:>132}", format!("exponent {exponent:.2}"));
                if exponent > FASTER_THAN_LINEAR {
                    broken.push(format!(
                        "{} / {} / {} via {entry}: time grows as the input to the power \
                         {exponent:.2}",
                        first.class, first.format, first.name
                    ));
                }
            }
        }
    }
    if broken.is_empty() {
        println!("\nevery class: time linear in the input, memory within the bound");
    } else {
        println!("\n{} broke a bound:\n{}", broken.len(), broken.join("\n"));
        std::process::exit(1);
    }
}

/// The least-squares slope of log(time) over log(size), from the measurable points: 1 for
/// linear work, 2 for quadratic. `None` with fewer than two such points.
fn exponent(points: &[(f64, f64)]) -> Option<f64> {
    let logs: Vec<(f64, f64)> = points
        .iter()
        .filter(|&&(_, secs)| secs >= MEASURABLE)
        .map(|&(size, secs)| (size.ln(), secs.ln()))
        .collect();
    if logs.len() < 2 {
        return None;
    }
    let n = logs.len() as f64;
    let (mx, my) = logs
        .iter()
        .fold((0.0, 0.0), |(x, y), &(a, b)| (x + a / n, y + b / n));
    let sxx: f64 = logs.iter().map(|&(x, _)| (x - mx).powi(2)).sum();
    let sxy: f64 = logs.iter().map(|&(x, y)| (x - mx) * (y - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The fastest of `repeat` runs (time is noisy on a busy machine; memory is not), or the first
/// that went wrong.
fn best_of(repeat: usize, entry: &str, path: &Path, scale: usize) -> Probe {
    let mut best = child(entry, path, scale);
    for _ in 1..repeat {
        if wrong(&best).is_some() {
            break;
        }
        let next = child(entry, path, scale);
        if wrong(&next).is_some() || next.secs < best.secs {
            best = next;
        }
    }
    best
}

/// Runs `entry` on `path` in a child: this benchmark again, told what to do.
fn child(entry: &str, path: &Path, scale: usize) -> Probe {
    let mut command = Command::new(std::env::current_exe().expect("the benchmark binary"));
    command
        .env(ENTRY, entry)
        .env(PATH, path)
        .env(SCALE, scale.to_string());
    probe::spawn(command, LIMITS)
}

/// A panic, a hang or a death; a typed error or a result is what a hostile input may get.
fn wrong(probe: &Probe) -> Option<String> {
    match &probe.outcome {
        Outcome::Ok(_) | Outcome::Err(_) => None,
        other => Some(format!("{other:?}")),
    }
}

/// Seconds to read the case's files from the page cache, best of three: the anchor for the
/// time a reader needs just to see its input.
fn read_anchor(path: &Path, case: &Case) -> f64 {
    let dir = path.parent().expect("a case's directory");
    let names: Vec<_> = std::iter::once(case.file_name.clone())
        .chain(case.siblings.iter().map(|(n, _)| n.clone()))
        .collect();
    (0..3)
        .map(|_| {
            let start = Instant::now();
            for name in &names {
                std::hint::black_box(std::fs::read(dir.join(name)).expect("the case reads back"));
            }
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 10 << 20 => format!("{} MiB", n >> 20),
        n if n >= 10 << 10 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(width - 1).collect();
        out.push('…');
        out
    }
}
