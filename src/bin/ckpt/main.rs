//! `ckpt`: inspect, compare, convert and verify checkpoint files (ckpt, PyTorch, safetensors).

mod diff;
mod entries;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use ckpt::{Checkpoint, Device, Format, LoadOptions, SaveOptions, Value};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "ckpt",
    version,
    about = "Inspect, compare, convert and verify checkpoint files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every tensor (key, dtype, shape, size, device) and plain value, with totals.
    Inspect {
        file: PathBuf,
        /// One JSON object: {"format", "entries": [{"key", "dtype", "shape", "sha256"} or
        /// {"key", "value"}]}, entries in file order, nested keys joined with '.'.
        #[arg(long)]
        json: bool,
    },
    /// Compare two files: keys only in one, dtype or shape changes, the largest absolute
    /// difference per tensor, changed values. Exits 1 if they differ.
    Diff { a: PathBuf, b: PathBuf },
    /// Convert between formats; the output's format follows its extension (.ckpt, .pt/.pth,
    /// .safetensors, NAME.safetensors.index.json) unless --format says otherwise.
    Convert {
        input: PathBuf,
        output: PathBuf,
        /// Remove this prefix from the keys that carry it (such as DataParallel's "module.").
        #[arg(long)]
        strip_prefix: Option<String>,
        /// The output format.
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
    },
    /// Check a file: structure, and every checksum where the format has them.
    Verify { file: PathBuf },
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Ckpt,
    Safetensors,
    Pytorch,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Ckpt => Format::Ckpt,
            FormatArg::Safetensors => Format::SafeTensors,
            FormatArg::Pytorch => Format::PyTorch,
        }
    }
}

/// Loads anything on the CPU, wherever it was saved.
fn load(path: &PathBuf) -> Result<Checkpoint, ckpt::Error> {
    ckpt::load_with(path, &LoadOptions::new().map_location(Device::Cpu))
}

fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cli.command {
        Command::Inspect { file, json } => {
            let checkpoint = load(&file)?;
            if json {
                println!("{}", entries::json(&checkpoint)?);
            } else {
                print!("{}", entries::table(&checkpoint, &file)?);
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
        } => {
            let checkpoint = load(&input)?;
            let value = match &strip_prefix {
                Some(prefix) => strip(&checkpoint, prefix),
                None => checkpoint.reborrow(),
            };
            let mut options = SaveOptions::new();
            if let Some(format) = format {
                options = options.format(format.into());
            }
            ckpt::save_with(value, &output, &options)?;
            eprintln!(
                "converted {} ({}) to {}",
                input.display(),
                checkpoint.format(),
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { file } => {
            let checkpoint = ckpt::load_with(&file, &LoadOptions::new().map_location(Device::Cpu))?;
            let tensors = checkpoint.tensors();
            let bytes: usize = tensors.iter().map(|(_, t)| t.nbytes()).sum();
            let checked = match checkpoint.format() {
                Format::Ckpt => "header and every tensor checksum match",
                Format::PyTorch => "structure and every zip record's CRC-32 checked",
                _ => "structure checked; the format carries no checksums",
            };
            println!(
                "{}: OK ({}, {} tensors, {}): {checked}",
                file.display(),
                checkpoint.format(),
                tensors.len(),
                entries::human(bytes)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The top-level keys of `value` with `prefix` removed where they carry it.
fn strip<'v>(value: &'v Value<'_>, prefix: &str) -> Value<'v> {
    match value {
        Value::Map(map) => map
            .iter()
            .map(|(k, v)| {
                let key = k.to_string();
                let key = key.strip_prefix(prefix).map_or(key.clone(), str::to_owned);
                (key, v.reborrow())
            })
            .collect(),
        other => other.reborrow(),
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
