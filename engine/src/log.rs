//! Run logs: one file per run under `build_data/logs/`, echoed to stderr when it is a terminal.
//!
//! A log that cannot be opened never stops a run: the engine says so once on stderr and goes on.
//!
//! Lines that the engine's own threads say while a feed runs (a degrade level change, from
//! control, which shares the ingress thread on a small machine) go through `tracing` to a
//! non-blocking stderr writer ([`init_events`]): the saying thread formats the line and hands
//! it to a writer thread, never waiting on the terminal. Never call `eprintln!` from the
//! ingress, a shard or control.

use std::io::{IsTerminal, Write};

/// A run's log.
pub struct Log {
    file: Option<std::fs::File>,
    echo: bool,
    /// Where the log is written, if anywhere.
    pub path: Option<std::path::PathBuf>,
}

impl Log {
    /// Opens `build_data/logs/<name>-<unix seconds>-<pid>.log`.
    pub fn open(name: &str) -> Log {
        let dir = crate::paths::logs();
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let path = dir.join(format!("{name}-{secs}-{}.log", std::process::id()));
        let file = std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::File::create(&path))
            .map_err(|e| eprintln!("tickcore: warning: no run log ({}: {e})", path.display()))
            .ok();
        Log {
            echo: std::io::stderr().is_terminal(),
            path: file.as_ref().map(|_| path),
            file,
        }
    }

    /// Writes one line.
    pub fn line(&mut self, msg: &str) {
        if let Some(f) = self.file.as_mut() {
            let _ = writeln!(f, "{msg}");
        }
        if self.echo {
            eprintln!("{msg}");
        }
    }

    /// Writes one line and shows it on stderr as `tickcore: msg` (what an operator, or a
    /// script waiting for the line, must see now).
    pub fn say(&mut self, msg: &str) {
        self.line(msg);
        eprintln!("tickcore: {msg}");
    }
}

/// Routes `tracing` events to stderr through a writer thread, as bare lines (no time, level
/// or target: they read like the engine's other `tickcore: ...` lines). Keep the guard alive
/// until the end of `main`: dropping it flushes what is queued. Lines beyond the writer's
/// queue (128,000) are dropped, never waited for.
pub fn init_events() -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_writer(writer)
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_ansi(false)
        .try_init();
    guard
}
