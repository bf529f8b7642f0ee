//! The `build_data/` layout, in one place: everything the engine generates (logs, benchmark
//! results, spool, generated sessions) lives under one directory that git ignores.
//!
//! The directory is `build_data/` in the working directory, or `$TICKCORE_DATA_DIR`.

use std::path::PathBuf;

/// The root of generated data.
pub fn data_dir() -> PathBuf {
    std::env::var_os("TICKCORE_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("build_data"))
}

/// Run logs.
pub fn logs() -> PathBuf {
    data_dir().join("logs")
}

/// Benchmark results.
pub fn bench() -> PathBuf {
    data_dir().join("bench")
}

/// Storage adapters' spool.
pub fn spool() -> PathBuf {
    data_dir().join("spool")
}

/// Generated sessions kept for reuse.
pub fn sessions() -> PathBuf {
    data_dir().join("sessions")
}

/// Shard checkpoints.
pub fn checkpoints() -> PathBuf {
    data_dir().join("checkpoints")
}
