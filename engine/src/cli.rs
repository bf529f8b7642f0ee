//! Command-line interface: every flag, its help text and its default, in one place.
//!
//! Owns parsing only. Each subcommand's work lives in [`crate::cmd`]; this module turns their
//! failures into one `tickcore: error: ...` line on stderr and an exit code (0 ok, 1 failed,
//! 2 bad usage).

use crate::cmd;
use clap::{Args, Parser, Subcommand, ValueEnum};
use shards::synth::{Profile, Scope};
use std::path::PathBuf;

/// A thread-per-core NASDAQ TotalView-ITCH 5.0 feed handler and full-depth order-book builder.
#[derive(Debug, Parser)]
#[command(
    name = "tickcore",
    version,
    about,
    long_about = "tickcore reads NASDAQ TotalView-ITCH 5.0 (BinaryFILE framing: u16 big-endian \
length + message), keeps a full-depth (L3) order book for every instrument, and reports books, \
trades and anomalies.\n\nStart with `tickcore gen` to write a synthetic session, then `tickcore \
inspect` or `tickcore book` on it. `tickcore book` with no --input builds a generated m7 session \
in memory.",
    after_help = "Exit codes: 0 success, 1 the input or environment failed (the message says \
which file and byte offset), 2 bad command-line usage."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a synthetic ITCH 5.0 session for tests, benchmarks and demos.
    ///
    /// The session has the structure of a NASDAQ day (system events O S Q M E C, a directory and
    /// trading action for every instrument, then order flow with a real day's mix of message
    /// types) and books that never cross. The same scope, message count, seed and profile always
    /// give the same bytes.
    Gen(GenArgs),
    /// Count what an ITCH 5.0 file holds: messages per type, instruments, time span, anomalies.
    Inspect(InspectArgs),
    /// Build every instrument's full-depth book from an ITCH 5.0 file and print the final books.
    ///
    /// Without --input, builds a generated m7 session (2,000,000 messages, seed 1) in memory.
    Book(BookArgs),
}

/// Instrument universes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// 2 instruments.
    F2,
    /// The seven large US tech names: AAPL MSFT AMZN GOOGL META NVDA TSLA.
    M7,
    /// 100 instruments.
    N100,
    /// 3,500 instruments.
    V3k,
}

impl From<ScopeArg> for Scope {
    fn from(s: ScopeArg) -> Scope {
        match s {
            ScopeArg::F2 => Scope::F2,
            ScopeArg::M7 => Scope::M7,
            ScopeArg::N100 => Scope::N100,
            ScopeArg::V3k => Scope::V3k,
        }
    }
}

/// Where adds land.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    /// Most adds at or near the inside, a thin tail to 200 ticks (like a real day).
    Realistic,
    /// Adds spread evenly over 200 ticks either side of the inside (deep books).
    Deep,
}

impl From<ProfileArg> for Profile {
    fn from(p: ProfileArg) -> Profile {
        match p {
            ProfileArg::Realistic => Profile::Realistic,
            ProfileArg::Deep => Profile::Deep,
        }
    }
}

/// `tickcore gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    /// Instrument universe.
    #[arg(long, value_enum, default_value = "m7")]
    pub scope: ScopeArg,
    /// Messages in the file, system events and directory included (accepts 20M, 500k, 1_000_000).
    #[arg(long, default_value = "1M", value_parser = parse_count)]
    pub messages: u64,
    /// Seed; the same seed gives the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where adds land relative to the inside.
    #[arg(long, value_enum, default_value = "realistic")]
    pub profile: ProfileArg,
    /// Output file [default: build_data/sessions/<scope>-<messages>-s<seed>[-deep].itch50].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `tickcore inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// ITCH 5.0 BinaryFILE to read.
    #[arg(long)]
    pub input: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// On corrupt framing, resynchronise and count instead of stopping with an error.
    #[arg(long)]
    pub skip_corrupt: bool,
}

/// `tickcore book`.
#[derive(Debug, Args)]
pub struct BookArgs {
    /// ITCH 5.0 BinaryFILE to read [default: a generated m7 session in memory].
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Show only this instrument (symbol as in the feed, e.g. AAPL).
    #[arg(long)]
    pub symbol: Option<String>,
    /// Price levels per side to show; 0 shows every level.
    #[arg(long, default_value_t = crate::report::DEFAULT_DEPTH)]
    pub depth: usize,
    /// One JSON object per instrument per line, sorted by locate (summary goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// On corrupt framing, resynchronise and count instead of stopping with an error.
    #[arg(long)]
    pub skip_corrupt: bool,
}

/// Parses a count with an optional k/M/G suffix and `_` separators.
pub fn parse_count(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let (digits, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1_000),
        Some('m' | 'M') => (&t[..t.len() - 1], 1_000_000),
        Some('g' | 'G') => (&t[..t.len() - 1], 1_000_000_000),
        _ => (&t[..], 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("`{s}` is not a count (examples: 1000000, 1_000_000, 500k, 20M)"))
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Gen(a) => cmd::gen::run(&a),
        Command::Inspect(a) => cmd::inspect::run(&a),
        Command::Book(a) => cmd::book::run(&a),
    };
    match result {
        Ok(()) => 0,
        Err(f) => {
            eprintln!("tickcore: error: {f}");
            f.code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse_with_suffixes() {
        assert_eq!(parse_count("20M"), Ok(20_000_000));
        assert_eq!(parse_count("500k"), Ok(500_000));
        assert_eq!(parse_count("1_000"), Ok(1_000));
        assert!(parse_count("12x").is_err());
        assert!(parse_count("99999999999G").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
