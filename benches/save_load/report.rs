//! What the run's figures mean: every target with its ratio and whether it is met, the table
//! of 1, 2 and all threads, and the byte traffic each path must move with the limit that puts
//! on this machine, computed from the anchors measured in the same run.

/// The medians of a run, by case name.
pub(crate) struct Results {
    bytes: usize,
    largest: usize,
    threads: usize,
    medians: Vec<(String, f64)>,
}

impl Results {
    pub(crate) fn new(bytes: usize, largest: usize, threads: usize) -> Self {
        Results {
            bytes,
            largest,
            threads,
            medians: Vec::new(),
        }
    }

    /// W's size in GiB.
    pub(crate) fn gib(&self) -> f64 {
        self.bytes as f64 / (1u64 << 30) as f64
    }

    pub(crate) fn insert(&mut self, name: &str, seconds: f64) {
        self.medians.push((name.to_owned(), seconds));
    }

    fn get(&self, name: &str) -> f64 {
        self.medians
            .iter()
            .find(|(n, _)| n == name)
            .map_or(f64::NAN, |r| r.1)
    }

    /// GiB/s of `name`, counting W's bytes once.
    fn rate(&self, name: &str) -> f64 {
        self.gib() / self.get(name)
    }

    pub(crate) fn print_table(&self, counts: &[usize]) {
        println!("threads table (seconds for W; GiB/s of W):");
        print!("  {:<28}", "case");
        for t in counts {
            print!(" {:>18}", format!("{t} thread(s)"));
        }
        println!();
        for case in [
            "memcpy_parallel",
            "xxh3_mapped_parallel",
            "ckpt_load_into",
            "ckpt_load_into_trusted",
            "pytorch_load_into",
        ] {
            print!("  {case:<28}");
            for t in counts {
                let name = format!("{case}@{t}");
                print!(
                    " {:>18}",
                    format!("{:.4} ({:.2})", self.get(&name), self.rate(&name))
                );
            }
            println!();
        }
    }

    pub(crate) fn print_targets(&self, lazy: f64, peaks: &[(&str, f64)]) {
        println!("targets (this run: ratio, target, met):");
        let line = target_line;
        let r = |a: &str, b: &str| self.get(a) / self.get(b);
        line(
            "verified load_from / safetensors load_into",
            r("ckpt_load_into", "safetensors_load_into"),
            1.0,
        );
        line(
            "verified load_from / memcpy (1 thread)",
            r("ckpt_load_into", "memcpy"),
            1.15,
        );
        line(
            "trusted load_from / safetensors load_into",
            r("ckpt_load_into_trusted", "safetensors_load_into"),
            0.9,
        );
        line(
            ".pt load_from / ckpt's own load_from",
            r("pytorch_load_into", "ckpt_load_into"),
            1.1,
        );
        self.print_save_targets();
        line("lazy open, ms", lazy * 1e3, 1.0);
        for (how, overhead) in peaks {
            if *how == "safetensors" {
                println!(
                    "  anchor peak memory of the safetensors crate's load above the model: {overhead:.1} MiB"
                );
                continue;
            }
            line(
                &format!("peak memory of load_from ({how}) above the model, MiB"),
                *overhead,
                64.0,
            );
        }
    }

    /// The saves' targets: each format's save against plain writes of the same bytes and
    /// against the safetensors crate's save, and `save_async`'s blocked time.
    pub(crate) fn print_save_targets(&self) {
        let r = |a: &str, b: &str| self.get(a) / self.get(b);
        for (what, case) in [
            ("save", "ckpt_save_nofsync"),
            (".pt save", "pytorch_save_nofsync"),
            (".safetensors save", "ckpt_safetensors_save_nofsync"),
        ] {
            target_line(
                &format!("{what}, no fsync / safetensors save"),
                r(case, "safetensors_save"),
                0.9,
            );
            target_line(
                &format!("{what}, no fsync / raw write"),
                r(case, "raw_write_nofsync"),
                1.05,
            );
        }
        target_line(
            "save, fsync / raw write + fsync",
            r("ckpt_save", "raw_write"),
            1.05,
        );
        target_line(
            "save_async blocked / memcpy into new memory",
            r("save_async_blocked", "memcpy_fresh"),
            1.2,
        );
    }

    /// The byte traffic of each path, its limit from this run's anchors, and what the targets
    /// become with it.
    pub(crate) fn print_traffic(&self, counts: &[usize]) {
        let t = self.threads;
        let n = self.gib();
        let g = |name: &str| self.get(name);
        println!(
            "byte traffic (N = {n:.3} GiB of tensor data, T = {t} threads; a copy reads N and writes N):"
        );
        println!(
            "  anchors: memcpy 1 thread {:.2} GiB/s, {t} threads {:.2} GiB/s; raw_read (pread, once) 1 thread {:.2} GiB/s, {t} threads {:.2} GiB/s; xxh3 pass mapped {:.2} GiB/s, fused with pread {:.2} GiB/s; CRC-32 pass mapped {:.2} GiB/s",
            self.rate("memcpy"),
            self.rate("memcpy_parallel"),
            self.rate("raw_read"),
            self.rate("raw_read_parallel"),
            self.rate("xxh3_mapped_parallel"),
            self.rate("xxh3_pread_parallel"),
            self.rate("crc32_mapped_parallel"),
        );
        // The checksum pass reads N; a tensor's xxh3 is one sequential hash, so the largest
        // tensor is hashed by one thread however many there are.
        let one = counts.first().copied().unwrap_or(1);
        let largest = self.largest as f64 / self.bytes as f64;
        let hash_1 = g(&format!("xxh3_mapped_parallel@{one}"));
        let hash = g("xxh3_mapped_parallel")
            .min(g("xxh3_pread_parallel"))
            .max(hash_1 * largest);
        let copy = g("memcpy_parallel");
        let verified = hash + copy;
        let pt = g("crc32_mapped_parallel") + copy;
        let st = g("safetensors_load_into");
        let memcpy = g("memcpy");
        let path = |what: &str,
                    traffic: &str,
                    limit: f64,
                    achieved: &str,
                    against: &[(&str, f64, f64)]| {
            let got = g(achieved);
            print!(
                "  {what}: moves {traffic}; limit {limit:.4} s, achieved {got:.4} s ({:.2} x the limit)",
                got / limit
            );
            for (anchor, anchor_s, target) in against {
                let best = limit / anchor_s;
                let can = if best <= *target {
                    "reachable"
                } else {
                    "out of reach"
                };
                print!("; best / {anchor} {best:.3} (target {target:.2}: {can})");
            }
            println!();
        };
        path(
            "trusted load_from",
            "2N (read the file, write the model)",
            copy,
            "ckpt_load_into_trusted",
            &[("safetensors", st, 0.9)],
        );
        path(
            "verified load_from",
            "3N (checksum pass reads N, then the copy)",
            verified,
            "ckpt_load_into",
            &[("safetensors", st, 1.0), ("memcpy", memcpy, 1.15)],
        );
        path(
            ".pt load_from",
            "3N (CRC-32 pass reads N, then the copy)",
            pt,
            "pytorch_load_into",
            &[("ckpt load_from limit", verified, 1.1)],
        );
        let write = g("raw_write_nofsync");
        path(
            "save, no fsync",
            "N through the kernel's write path (one writer per file: buffered writes to a file are serialised by its inode lock), N read by the hash on another core",
            write,
            "ckpt_save_nofsync",
            &[
                ("raw write", write, 1.05),
                ("safetensors save", g("safetensors_save"), 0.9),
            ],
        );
        path(
            "save_async blocked",
            "the snapshot: N copied into new memory (the kernel zeroes each new page first)",
            g("memcpy_fresh"),
            "save_async_blocked",
            &[("memcpy into new memory", g("memcpy_fresh"), 1.2)],
        );
        // What the same arithmetic gives with more cores if each thread kept its one-thread
        // rate: an upper bound on the gain, since memory bandwidth is shared; the 16-core GPU
        // host's own run of this benchmark measures it (scripts/gpu-check.sh).
        let copy_1 = g(&format!("memcpy_parallel@{one}"));
        let crc_share = g("crc32_mapped_parallel") / g("xxh3_mapped_parallel");
        for cores in [t, 16] {
            let c = cores as f64;
            let hash_c = hash_1 * (1.0 / c).max(largest);
            let verified_c = hash_c + copy_1 / c;
            let pt_c = hash_c * crc_share + copy_1 / c;
            println!(
                "  at {cores} cores, per-thread rates held: trusted limit {:.4} s ({:.3} x safetensors), verified limit {:.4} s ({:.3} x safetensors, {:.3} x memcpy), .pt limit {:.4} s ({:.3} x verified)",
                copy_1 / c,
                copy_1 / c / st,
                verified_c,
                verified_c / st,
                verified_c / memcpy,
                pt_c,
                pt_c / verified_c
            );
        }
    }
}

/// `  target WHAT RATIO (<= TARGET) met|not met`.
fn target_line(what: &str, ratio: f64, target: f64) {
    let met = if ratio <= target { "met" } else { "not met" };
    println!("  target {what:<58} {ratio:>7.3} (<= {target:.2}) {met}");
}
