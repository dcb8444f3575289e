//! Runs work in a child process and watches it: its outcome, its time and its peak resident
//! memory, with a timeout and a cap on memory, so that a panic, a hang or a memory blow-up in
//! the child is an observation of the parent, not the parent's own death.
//!
//! The child is the current executable run again (a test binary with `--exact`, or a
//! benchmark with its own arguments); it does its work and ends with [`report`].

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How a child's work ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It returned `Ok`, with a description of what it got.
    Ok(String),
    /// It returned a typed error, with its message.
    Err(String),
    /// It panicked, with the message and where.
    Panic(String),
    /// It ran past the timeout and was killed.
    Timeout,
    /// Its memory grew past the cap and it was killed.
    OverMemory,
    /// It died some other way: a signal, an abort, an exit without a report.
    Died(String),
}

/// What the parent saw of one child.
#[derive(Clone, Debug)]
pub struct Probe {
    pub outcome: Outcome,
    /// The work's own time, as the child measured it (the wall time when it did not report).
    pub secs: f64,
    /// Peak resident memory (`VmHWM`), in bytes.
    pub peak: u64,
    /// Resident memory before the work started, in bytes.
    pub baseline: u64,
}

impl Probe {
    /// What the work added to the process's peak memory.
    pub fn peak_growth(&self) -> u64 {
        self.peak.saturating_sub(self.baseline)
    }
}

/// Limits a child runs under.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub timeout: Duration,
    pub memory: u64,
}

/// A process's peak resident memory (`VmHWM`) in bytes, from `/proc`.
pub fn peak_memory(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs `command` (the child) under `limits`.
pub fn spawn(mut command: Command, limits: Limits) -> Probe {
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the child starts");
    let pid = child.id().to_string();
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let stderr = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let mut peak = 0;
    let mut killed = None;
    loop {
        if child
            .try_wait()
            .expect("the child can be waited for")
            .is_some()
        {
            break;
        }
        peak = peak.max(peak_memory(&pid).unwrap_or(0));
        if start.elapsed() > limits.timeout {
            killed = Some(Outcome::Timeout);
        } else if peak > limits.memory {
            killed = Some(Outcome::OverMemory);
        }
        if killed.is_some() {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let wall = start.elapsed().as_secs_f64();
    let stdout = stdout.join().expect("the reader thread ends");
    let stderr = stderr.join().expect("the reader thread ends");
    if let Some(outcome) = killed {
        return Probe {
            outcome,
            secs: wall,
            peak,
            baseline: 0,
        };
    }
    // A test harness may have printed the test's name on the same line.
    let line = stdout
        .lines()
        .find_map(|l| l.find("PROBE\t").map(|at| &l[at..]));
    let Some(line) = line else {
        let tail: String = stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
        return Probe {
            outcome: Outcome::Died(tail),
            secs: wall,
            peak,
            baseline: 0,
        };
    };
    let fields: Vec<&str> = line.splitn(6, '\t').collect();
    let message = fields[5].replace("\\n", "\n");
    let outcome = match fields[1] {
        "ok" => Outcome::Ok(message),
        "err" => Outcome::Err(message),
        _ => Outcome::Panic(message),
    };
    Probe {
        outcome,
        secs: fields[2].parse().unwrap_or(wall),
        peak: fields[3].parse::<u64>().unwrap_or(0).max(peak),
        baseline: fields[4].parse().unwrap_or(0),
    }
}

static PANIC: Mutex<Option<String>> = Mutex::new(None);

/// In the child: runs `work`, prints the line [`spawn`] reads, and exits.
pub fn report(work: impl FnOnce() -> Result<String, String> + std::panic::UnwindSafe) -> ! {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let mut slot = PANIC.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(format!("{message}{at}"));
    }));
    let baseline = peak_memory("self").unwrap_or(0);
    let start = Instant::now();
    let result = std::panic::catch_unwind(work);
    let secs = start.elapsed().as_secs_f64();
    let peak = peak_memory("self").unwrap_or(0);
    let panic = PANIC.lock().unwrap_or_else(|e| e.into_inner()).take();
    let (kind, message) = match (result, panic) {
        (_, Some(panic)) => ("panic", panic),
        (Err(_), None) => ("panic", String::new()),
        (Ok(Ok(m)), None) => ("ok", m),
        (Ok(Err(m)), None) => ("err", m),
    };
    println!(
        "PROBE\t{kind}\t{secs}\t{peak}\t{baseline}\t{}",
        message.replace('\n', "\\n")
    );
    std::process::exit(0)
}
