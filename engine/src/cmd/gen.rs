//! `tickcore gen`: writes a synthetic session to a file, in chunks, with progress.

use crate::cli::GenArgs;
use crate::error::{Failure, Result};
use crate::fmt::{bytes, count, rate};
use crate::progress::Progress;
use shards::synth::{GenConfig, Generator, Profile};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// Messages generated per write.
const CHUNK: u64 = 1 << 16;

/// The file name used when `--out` is not given.
pub fn default_path(cfg: &GenConfig) -> PathBuf {
    let suffix = match cfg.profile {
        Profile::Realistic => String::new(),
        p => format!("-{}", p.name()),
    };
    PathBuf::from(format!(
        "build_data/sessions/{}-{}-s{}{suffix}.itch50",
        cfg.scope.name(),
        cfg.messages,
        cfg.seed
    ))
}

/// Runs the command.
pub fn run(a: &GenArgs) -> Result<()> {
    let cfg = GenConfig {
        scope: a.scope.into(),
        messages: a.messages,
        seed: a.seed,
        profile: a.profile.into(),
    };
    let mut g = Generator::new(&cfg).map_err(|e| Failure::new(format!("--messages: {e}")))?;
    let path = a.out.clone().unwrap_or_else(|| default_path(&cfg));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::at(dir, format!("cannot create directory: {e}")))?;
    }
    let file = std::fs::File::create(&path)
        .map_err(|e| Failure::at(&path, format!("cannot create: {e}")))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut buf = Vec::with_capacity(CHUNK as usize * 50);
    let mut progress = Progress::new("gen", cfg.messages, "messages");
    let start = Instant::now();
    let mut written = 0u64;
    loop {
        buf.clear();
        if g.fill(&mut buf, CHUNK) == 0 {
            break;
        }
        w.write_all(&buf)
            .map_err(|e| Failure::at(&path, format!("write failed: {e}")))?;
        written += buf.len() as u64;
        progress.update(g.emitted());
    }
    w.flush()
        .map_err(|e| Failure::at(&path, format!("write failed: {e}")))?;
    progress.finish();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "wrote {} messages ({}) of a {} {} session, seed {}, to {} in {secs:.2} s ({})",
        count(cfg.messages),
        bytes(written),
        cfg.scope.name(),
        cfg.profile.name(),
        cfg.seed,
        path.display(),
        rate(cfg.messages as f64 / secs.max(1e-9))
    );
    Ok(())
}
