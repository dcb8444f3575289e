//! `ckpt`: inspect, compare, convert and verify checkpoint files (ckpt, PyTorch, safetensors)
//! and directories (PyTorch DCP, ckpt's sharded checkpoints); clean up unfinished sharded saves.

mod consolidate;
mod convert;
mod diff;
mod entries;
mod progress;
mod room;
mod sharded;
mod split;

use std::path::PathBuf;
use std::process::ExitCode;

use ckpt::format::Registry;
use ckpt::{Checkpoint, Device, LoadOptions};
use clap::builder::PossibleValuesParser;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ckpt",
    version,
    about = "Inspect, compare, convert and verify checkpoint files",
    long_about = "Inspect, compare, convert and verify checkpoint files. Built with the \
                  `object-store` feature, every FILE may be a URL (s3://bucket/key, gs://, \
                  az://, https://), reached with the environment's credentials (AWS_*, \
                  GOOGLE_*, AZURE_*)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every tensor (key, dtype, shape, size, device) and plain value, with totals, from
    /// the file's structure alone: no tensor data is read, so a damaged file is listed too. Of
    /// a sharded checkpoint directory: whether it is committed (or which ranks are missing),
    /// and every tensor's global shape and chunks by rank, from its manifests.
    Inspect {
        #[arg(
            help = "A file, or with the `object-store` feature a URL (s3://bucket/key, \
                      gs://, az://, https://), read by ranges: only the header is fetched"
        )]
        file: PathBuf,
        /// One JSON object: {"format", "entries": [{"key", "dtype", "shape", "sha256"} or
        /// {"key", "value"}]}, entries in file order, nested keys joined with '.'. Reads and
        /// checks all the data, to hash it.
        #[arg(long)]
        json: bool,
    },
    /// Compare two files: keys only in one, dtype or shape changes, the largest absolute
    /// difference per tensor, changed values. Exits 1 if they differ.
    Diff { a: PathBuf, b: PathBuf },
    /// Convert between formats; the output's format follows its extension (.ckpt, .pt/.pth,
    /// .safetensors, NAME.safetensors.index.json) unless --format says otherwise.
    ///
    /// INPUT may be a sharded checkpoint directory (rank-N.ckpt, rank-N.manifest.json,
    /// checkpoint.json), local or at a URL ending in / (`s3://bucket/run/step-100/`), read by
    /// ranges: it is consolidated, every global tensor whole under its global key and every
    /// block checked against its checksum. Memory holds one tensor at a time (about twice the
    /// largest tensor's bytes); the others wait in a nameless scratch file in OUTPUT's
    /// directory (the system's temporary directory, TMPDIR, for an OUTPUT at a URL), which
    /// needs their bytes of free disk. A directory without checkpoint.json is refused, naming
    /// the ranks present and missing.
    ///
    /// With --shards N, OUTPUT is a new directory written as a job of N ranks would save it
    /// (`ckpt::distributed::load` reads it into any sharding): every tensor with at least N
    /// rows split along its first dimension, sizes differing by at most one; 0-d tensors and
    /// those with fewer rows saved whole, once, by rank 0 (replicated). The layout holds
    /// tensors only, under their flattened keys: other values are refused by key unless
    /// --plain-values drop. Each rank's rows are copied out of INPUT, so memory holds about
    /// INPUT's tensor bytes. A sharded directory as INPUT is resharded. OUTPUT may be a URL's
    /// prefix (`s3://bucket/run/step-100/`) that holds no sharded checkpoint's files.
    #[command(verbatim_doc_comment)]
    Convert {
        /// A file, a PyTorch DCP directory, or a ckpt sharded checkpoint directory.
        input: PathBuf,
        /// The file to write; with --shards, the new directory.
        output: PathBuf,
        /// Remove this prefix from the keys of every state dict in the file that carry it (such
        /// as DataParallel's "module."); a prefix no key carries is an error.
        #[arg(long)]
        strip_prefix: Vec<String>,
        /// The output format.
        #[arg(long, value_parser = format_names())]
        format: Option<String>,
        /// Write only this sub-tree of the file, by its key (nested keys joined with '.'), such
        /// as a training checkpoint's `model_state_dict`.
        #[arg(long, value_name = "KEY")]
        select: Option<String>,
        /// What to do with values that are not tensors (an epoch, a learning rate), which
        /// safetensors cannot hold: drop them, or keep them as safetensors metadata. Without
        /// it they are kept, and safetensors output refuses them naming the key.
        #[arg(long, value_enum)]
        plain_values: Option<convert::PlainValues>,
        /// Split INPUT into a sharded checkpoint directory of this many ranks (at least 1).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        shards: Option<u64>,
    },
    /// Check a file: structure, and every checksum where the format has them. Of a sharded
    /// checkpoint directory, every block of every rank's data, naming each damaged one.
    Verify { file: PathBuf },
    /// List the incomplete sharded checkpoints (saves that never wrote checkpoint.json) in DIR
    /// and its sub-directories (step-100/, step-200/, ...), and with --yes remove them.
    /// Committed checkpoints are never touched. Not while a job is saving into DIR. DIR may be
    /// a URL's prefix (`s3://bucket/run/`), with the `object-store` feature.
    Clean {
        dir: PathBuf,
        /// Remove what is listed: the files a sharded save writes, and a local sub-directory
        /// left empty.
        #[arg(long, visible_alias = "remove")]
        yes: bool,
    },
}

/// The formats `--format` accepts: every format of the registry, by name.
fn format_names() -> PossibleValuesParser {
    let names: Vec<&'static str> = Registry::builtin().formats().map(|f| f.name()).collect();
    PossibleValuesParser::new(names)
}

/// Loads anything on the CPU, wherever it was saved.
fn load(path: &PathBuf) -> Result<Checkpoint, ckpt::Error> {
    ckpt::load_with(path, &LoadOptions::new().map_location(Device::Cpu))
}

fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cli.command {
        Command::Inspect { file, json } => {
            if sharded::is_sharded(&file) {
                if json {
                    return Err(format!(
                        "{}: --json hashes a file's tensors; of a sharded checkpoint, `ckpt convert` it to one file first",
                        file.display()
                    )
                    .into());
                }
                print!(
                    "{}",
                    sharded::table(&ckpt::distributed::inspect(&file)?, &file)
                );
            } else if json {
                println!("{}", entries::json(&load(&file)?)?);
            } else {
                print!("{}", entries::table(&ckpt::inspect(&file)?, &file));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff { a, b } => {
            let report = diff::diff(&load(&a)?, &load(&b)?);
            print!("{report}");
            Ok(if report.is_same() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Convert {
            input,
            output,
            strip_prefix,
            format,
            select,
            plain_values,
            shards,
        } => {
            let plan = convert::Plan {
                strip: &strip_prefix,
                format: format.as_deref(),
                select: select.as_deref(),
                plain_values,
            };
            if shards.is_some() {
                if let Some(name) = &format {
                    return Err(format!(
                        "--format {name} names one output file's format; the data files of a \
                         sharded directory (--shards) are always ckpt's"
                    )
                    .into());
                }
                if plain_values == Some(convert::PlainValues::Metadata) {
                    return Err(
                        "--plain-values metadata is for safetensors output; a sharded \
                                directory (--shards) holds tensors only: use --plain-values drop"
                            .into(),
                    );
                }
            }
            let (value, label): (std::borrow::Cow<'_, ckpt::Value<'static>>, String);
            let checkpoint;
            if sharded::is_sharded(&input) {
                let read = consolidate::read(&input, &output, plan.select)?;
                label = format!("ckpt sharded, {} ranks", read.world_size);
                value = std::borrow::Cow::Owned(read.value);
            } else {
                checkpoint = load(&input)?;
                label = checkpoint.format().name().to_owned();
                value = std::borrow::Cow::Borrowed(checkpoint.value());
            }
            let location = input.display().to_string();
            match shards {
                None => {
                    convert::convert(&value, &location, &output, &plan)?;
                    eprintln!("converted {location} ({label}) to {}", output.display());
                }
                Some(n) => {
                    let world =
                        usize::try_from(n).map_err(|_| format!("--shards {n}: too many"))?;
                    let written = convert::prepared(&value, &location, &plan, |value| {
                        split::split(value, &location, &output, world, plain_values)
                    })?;
                    eprintln!(
                        "split {location} ({label}) into {world} shard(s) in {}: {} tensor(s) by rows, {} whole on rank 0",
                        output.display(),
                        written.split,
                        written.replicated
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { file } if sharded::is_sharded(&file) => Ok(if sharded::verify(&file)? {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        }),
        Command::Verify { file } => {
            let checkpoint = load(&file)?;
            let tensors = checkpoint.tensors();
            let bytes: usize = tensors.iter().map(|(_, t)| t.nbytes()).sum();
            let checked = match checkpoint.format().checksums() {
                Some(what) => format!("every checksum matches ({what})"),
                None => "structure checked; the format carries no checksums".to_owned(),
            };
            println!(
                "{}: OK ({}, {} tensors, {}): {checked}",
                file.display(),
                checkpoint.format().name(),
                tensors.len(),
                entries::human(bytes as u64)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Clean { dir, yes } => {
            sharded::clean(&dir, yes)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ckpt: {err}");
            ExitCode::from(2)
        }
    }
}
