//! Run logs: one file per run under `build_data/logs/`, echoed to stderr when it is a terminal.
//!
//! A log that cannot be opened never stops a run: the engine says so once on stderr and goes on.

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
}
