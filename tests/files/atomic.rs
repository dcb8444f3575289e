//! A save that crashes or fails midway leaves the previous file intact and loadable.
//!
//! The tests run this test binary again as a child that saves a large checkpoint over an
//! existing one, then kill it mid-write, or limit its file size so that the write fails.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ckpt::{Tensor, dict};
use ndarray::Array1;

const CHILD: &str = "CKPT_ATOMIC_CHILD";

fn original(path: &Path) {
    ckpt::save(
        dict! { "version" => "old", "w" => Tensor::from(Array1::from_elem(1000, 1.5f32)) },
        path,
    )
    .unwrap();
}

fn assert_original(path: &Path) {
    let checkpoint = ckpt::load(path).unwrap();
    assert_eq!(checkpoint.get::<String>("version").unwrap(), "old");
    assert_eq!(
        checkpoint["w"].as_tensor().unwrap().to_f64_vec().unwrap(),
        vec![1.5; 1000]
    );
}

/// In the child: saves 256 MiB over `path`, reporting how the save ended.
fn child_save(path: &Path) {
    let big = Tensor::from(Array1::from_elem(64 << 20, 0.25f32));
    match ckpt::save(dict! { "version" => "new", "big" => &big }, path) {
        Ok(()) => println!("saved"),
        Err(err) => {
            println!("failed: {err}");
            // The failed save left the old file, and no temporary file.
            assert_original(path);
            let entries = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
            assert_eq!(entries, 1, "the temporary file was removed");
            println!("old file intact");
        }
    }
}

fn child(test: &str, path: &Path) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, path)
        .stdout(Stdio::piped());
    command
}

#[test]
fn a_save_killed_midway_leaves_the_previous_file() {
    if let Some(path) = std::env::var_os(CHILD) {
        child_save(Path::new(&path));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.ckpt");
    original(&path);
    let test = crate::common::test_name(
        module_path!(),
        "a_save_killed_midway_leaves_the_previous_file",
    );
    let mut running = child(&test, &path).spawn().unwrap();
    // Wait until the child is writing its temporary file, then kill it.
    let start = Instant::now();
    let temporary = loop {
        let partial = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p != &path && std::fs::metadata(p).is_ok_and(|m| m.len() > 1 << 20));
        if let Some(p) = partial {
            break p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the child never started writing"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    running.kill().unwrap();
    let status = running.wait().unwrap();
    assert!(!status.success(), "killed before it finished");
    assert_original(&path);
    // A kill leaves the partial temporary file; it never replaces the checkpoint.
    let name = temporary
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with(".model.ckpt.ckpt-") && name.ends_with(".tmp"),
        "{name}"
    );
    // The next save of the same file removes what the killed one left behind.
    original(&path);
    assert_original(&path);
    if cfg!(target_os = "linux") {
        assert!(
            !temporary.exists(),
            "the killed save's {name} is left behind"
        );
    }
}

#[cfg(unix)]
#[test]
fn a_save_failing_midway_leaves_the_previous_file() {
    if let Some(path) = std::env::var_os(CHILD) {
        child_save(Path::new(&path));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.ckpt");
    original(&path);
    // A 4 MiB file size limit makes a write fail with EFBIG partway through the save.
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 8192; exec \"$0\" \"$@\"")
        .arg(exe)
        .args([
            &crate::common::test_name(
                module_path!(),
                "a_save_failing_midway_leaves_the_previous_file",
            ),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("failed: ") && stdout.contains("File too large"),
        "{stdout}"
    );
    assert!(stdout.contains("old file intact"), "{stdout}");
    assert_original(&path);
}
