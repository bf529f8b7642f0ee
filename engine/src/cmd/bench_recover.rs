//! `tickcore bench --recover-at N`: how long a restarted engine takes to be live again.
//!
//! A `tickcore exchange` process serves the generated session over MoldUDP64 on loopback at
//! `--rate`; a `tickcore run` process follows it with a capture (and checkpoints, in the first
//! case), is SIGKILLed once it has applied N messages, and is started again at once with
//! `--recover`. The figure is the restarted run's own `live_again_s`: from its start to the
//! moment every message the line had sent was in. Two cases, back to back: from the newest
//! checkpoint (`--checkpoint-every-s`, 600 s of feed time when 0) and from the capture alone.
//!
//! Owns the processes, their ports and their data directories (under
//! build_data/bench/recover/). Never reads the engine's internals: only what an operator sees,
//! `/metrics` and the run's JSON.

use crate::cli::BenchArgs;
use crate::error::{Failure, Result};
use crate::fmt::count;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Checkpoint interval of the first case when `--checkpoint-every-s` is 0 (feed seconds).
const DEFAULT_EVERY_S: u64 = 600;
/// How long the exchange answers re-requests after its last message, seconds.
const LINGER_S: &str = "10";

/// One case: how the killed run checkpointed.
struct Case {
    name: &'static str,
    every_s: u64,
}

/// What one restart showed.
#[derive(Debug, serde::Serialize)]
struct Restart {
    case: &'static str,
    checkpoint_every_s: u64,
    killed_at: u64,
    resumed_after: u64,
    from_capture: u64,
    rerequested: u64,
    live_again_s: Option<f64>,
    live_again_seq: Option<u64>,
    lost_messages: u64,
    capture_overflow: u64,
    ended: bool,
    /// The recovered run's final books equal `tickcore book --json` on the session file,
    /// byte for byte.
    books_equal: bool,
}

/// Runs both cases and prints and writes the result.
pub fn run(a: &BenchArgs, at: u64) -> Result<()> {
    let rate = super::bench::parse_rate(&a.rate)
        .map_err(Failure::new)?
        .ok_or_else(|| {
            Failure::new("bench --recover-at needs a line rate (--rate 300k): a live exchange paces its session")
        })?;
    if at >= a.messages {
        return Err(Failure::new(format!(
            "--recover-at {at} must be below --messages {}: the session must go on after the kill",
            a.messages
        )));
    }
    let root = crate::paths::bench().join("recover");
    let session = session_file(a, &root)?;
    let reference = reference_books(&session)?;
    let every = if a.checkpoint_every_s > 0 {
        a.checkpoint_every_s
    } else {
        DEFAULT_EVERY_S
    };
    let cases = [
        Case {
            name: "checkpoint",
            every_s: every,
        },
        Case {
            name: "capture alone",
            every_s: 0,
        },
    ];
    let mut results = Vec::new();
    for c in &cases {
        eprintln!(
            "tickcore bench: restart from {}: line at {}/s, kill at message {}...",
            c.name,
            count(rate as u64),
            count(at)
        );
        results.push(restart(a, c, &session, &reference, &root, at, rate)?);
    }
    let j = serde_json::json!({
        "shape": super::bench::SHAPE,
        "kind": "recover",
        "scope": shards::synth::Scope::from(a.scope).name(),
        "messages": a.messages,
        "seed": a.seed,
        "rate": rate,
        "target_live_again_s": 5.0,
        "restarts": results,
    });
    let path = a.json.clone().unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        crate::paths::bench().join(format!("{secs}-recover.json"))
    });
    std::fs::write(&path, serde_json::to_string_pretty(&j).unwrap_or_default())
        .map_err(|e| Failure::at(&path, format!("cannot write the result: {e}")))?;
    print!("{}", table(&results));
    println!("  wrote {}", path.display());
    Ok(())
}

/// The session as a file the exchange process serves (generated once, kept for reuse).
fn session_file(a: &BenchArgs, root: &Path) -> Result<PathBuf> {
    let scope: shards::synth::Scope = a.scope.into();
    let f = crate::paths::sessions().join(format!(
        "{}-{}-s{}.itch50",
        scope.name(),
        a.messages,
        a.seed
    ));
    std::fs::create_dir_all(root)
        .and_then(|_| std::fs::create_dir_all(crate::paths::sessions()))
        .map_err(|e| Failure::at(root, format!("cannot create the directory: {e}")))?;
    if !f.exists() {
        eprintln!(
            "tickcore bench: generating {} {} messages (seed {}) into {}...",
            scope.name(),
            count(a.messages),
            a.seed,
            f.display()
        );
        let bytes = shards::synth::generate(&shards::synth::GenConfig {
            scope,
            messages: a.messages,
            seed: a.seed,
            profile: shards::synth::Profile::Realistic,
        })
        .map_err(|e| Failure::new(e.to_string()))?;
        std::fs::write(&f, bytes)
            .map_err(|e| Failure::at(&f, format!("cannot write the session: {e}")))?;
    }
    Ok(f)
}

/// The session's final books from `tickcore book --json --depth 0`, kept beside it.
fn reference_books(session: &Path) -> Result<PathBuf> {
    let out = session.with_extension("books.json");
    if out.exists() {
        return Ok(out);
    }
    eprintln!("tickcore bench: building the reference books with tickcore book...");
    let mut cmd = Command::new(exe()?);
    cmd.args(["book", "--input"])
        .arg(session)
        .args(["--json", "--depth", "0"]);
    let log = out.with_extension("log");
    let status = spawn(&mut cmd, &log, Some(&out))?
        .wait()
        .map_err(|e| Failure::new(format!("tickcore book: {e}")))?;
    if !status.success() {
        let _ = std::fs::remove_file(&out);
        return Err(Failure::at(
            &log,
            format!("tickcore book failed ({status})"),
        ));
    }
    Ok(out)
}

/// A free loopback port for UDP (`udp`) or TCP.
fn free_port(udp: bool) -> Result<u16> {
    let p = if udp {
        std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr())
    } else {
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|s| s.local_addr())
    };
    p.map(|a| a.port())
        .map_err(|e| Failure::new(format!("bench --recover-at: no free loopback port: {e}")))
}

/// One case: exchange, run, kill at `at`, recover, and what the recovered run reported.
fn restart(
    a: &BenchArgs,
    c: &Case,
    session: &Path,
    reference: &Path,
    root: &Path,
    at: u64,
    rate: f64,
) -> Result<Restart> {
    let dir = root.join(c.name.replace(' ', "-"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::at(&dir, format!("cannot create the directory: {e}")))?;
    let line = format!("udp://127.0.0.1:{}", free_port(true)?);
    let rerequest = format!("127.0.0.1:{}", free_port(true)?);
    let admin = format!("127.0.0.1:{}", free_port(false)?);
    let mut exchange = Guard(spawn(
        Command::new(exe()?)
            .args(["exchange", "--input"])
            .arg(session)
            .args(["--lines", &line, "--rerequest", &rerequest])
            .args(["--speed", &format!("{}/s", rate as u64)])
            .args(["--linger-s", LINGER_S]),
        &dir.join("exchange.log"),
        None,
    )?);
    let every = c.every_s.to_string();
    let feed = format!("mold:{line}");
    let capture = dir.join("capture.pcap");
    let mut args: Vec<String> = ["run", "--feed", &feed, "--rerequest", &rerequest]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--capture".into(), capture.display().to_string()]);
    args.extend(["--checkpoint-every-s".into(), every]);
    if let Some(n) = a.shards {
        args.extend(["--shards".into(), n.to_string()]);
    }
    let out = dir.join("recovered.json");
    let engine = |extra: &[&str], log: &str, json: Option<&Path>| -> Result<Child> {
        let mut cmd = Command::new(exe()?);
        cmd.args(&args).args(extra).env("TICKCORE_DATA_DIR", &dir);
        spawn(&mut cmd, &dir.join(log), json)
    };
    let mut first = Guard(engine(&["--admin", &admin], "run-killed.log", None)?);
    let killed_at = wait_applied(&mut first.0, &admin, at, rate)?;
    first
        .0
        .kill()
        .map_err(|e| Failure::new(format!("cannot kill the run: {e}")))?;
    let _ = first.0.wait();
    let books = dir.join("books.json");
    let books_arg = books.display().to_string();
    let mut second = Guard(engine(
        &[
            "--admin",
            "off",
            "--recover",
            "--json",
            "--depth",
            "0",
            "--dump-books",
            &books_arg,
        ],
        "run-recovered.log",
        Some(&out),
    )?);
    let budget = Duration::from_secs_f64((a.messages - at) as f64 / rate + 120.0);
    let status = wait_exit(&mut second.0, budget)?;
    let _ = exchange.0.kill();
    if !status.success() {
        return Err(Failure::at(
            &dir.join("run-recovered.log"),
            format!("the recovered run failed ({status}); its log says why"),
        ));
    }
    let equal = std::fs::read(&books).ok() == std::fs::read(reference).ok();
    report(c, killed_at, &out, equal)
}

/// Reads the recovered run's JSON.
fn report(c: &Case, killed_at: u64, out: &Path, books_equal: bool) -> Result<Restart> {
    let text = std::fs::read_to_string(out)
        .map_err(|e| Failure::at(out, format!("cannot read the recovered run's JSON: {e}")))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Failure::at(out, format!("not the run's JSON: {e}")))?;
    let l = &v["live"];
    let n = |x: &serde_json::Value| x.as_u64().unwrap_or(0);
    let rerequested = l["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x[0] == "rerequest")
        .map(|x| n(&x[1]["messages"]))
        .sum();
    Ok(Restart {
        case: c.name,
        checkpoint_every_s: c.every_s,
        killed_at,
        resumed_after: n(&v["checkpoints"]["resumed_after"]),
        from_capture: n(&l["from_capture"]),
        rerequested,
        live_again_s: l["live_again_s"].as_f64(),
        live_again_seq: l["live_again_seq"].as_u64(),
        lost_messages: n(&l["recovery"]["lost_messages"]),
        capture_overflow: n(&l["capture_overflow"]),
        ended: l["ended"].as_bool().unwrap_or(false),
        books_equal,
    })
}

/// Polls the run's `/metrics` until it has applied `at` messages; says progress every 5 s.
fn wait_applied(run: &mut Child, admin: &str, at: u64, rate: f64) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs_f64(at as f64 / rate * 3.0 + 60.0);
    let mut said = Instant::now();
    loop {
        if let Some(s) = run.try_wait().ok().flatten() {
            return Err(Failure::new(format!(
                "the run ended ({s}) before message {at}; see its log under build_data/bench/recover/"
            )));
        }
        let applied = metric(admin, "tickcore_live_applied_total").unwrap_or(0);
        if applied >= at {
            return Ok(applied);
        }
        if Instant::now() > deadline {
            return Err(Failure::new(format!(
                "the run applied only {} of {} messages in time: the line may be too fast for \
                 this machine (lower --rate)",
                count(applied),
                count(at)
            )));
        }
        if said.elapsed() >= Duration::from_secs(5) {
            eprintln!("  applied {} of {}", count(applied), count(at));
            said = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One value of the run's `/metrics`, if the endpoint answers.
fn metric(admin: &str, name: &str) -> Option<u64> {
    let mut s = std::net::TcpStream::connect(admin).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {admin}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

/// Waits for `child` to exit, at most `budget`.
fn wait_exit(child: &mut Child, budget: Duration) -> Result<std::process::ExitStatus> {
    let until = Instant::now() + budget;
    loop {
        if let Some(s) = child.try_wait().ok().flatten() {
            return Ok(s);
        }
        if Instant::now() > until {
            return Err(Failure::new(format!(
                "the recovered run did not reach the end of the session within {} s",
                budget.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn exe() -> Result<PathBuf> {
    std::env::current_exe()
        .map_err(|e| Failure::new(format!("cannot find this program's path: {e}")))
}

/// Starts `cmd` with its standard error in `log`, and its standard output in `stdout` (else
/// in `log` too).
fn spawn(cmd: &mut Command, log: &Path, stdout: Option<&Path>) -> Result<Child> {
    let create = |p: &Path| {
        std::fs::File::create(p).map_err(|e| Failure::at(p, format!("cannot create: {e}")))
    };
    let f = create(log)?;
    let g = match stdout {
        Some(p) => create(p)?,
        None => f
            .try_clone()
            .map_err(|e| Failure::at(log, format!("cannot share the log: {e}")))?,
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(g))
        .stderr(Stdio::from(f))
        .spawn()
        .map_err(|e| Failure::new(format!("cannot start {cmd:?}: {e}")))
}

/// A child killed when dropped (a failed case leaves no process behind).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The printed table.
fn table(rs: &[Restart]) -> String {
    let mut s = String::from(
        "  restart            killed at     resumed after  from capture  re-requested  live again  lost  books = file\n",
    );
    for r in rs {
        s += &format!(
            "  {:<17} {:>12} {:>14} {:>13} {:>13} {:>9}  {:>4}  {}\n",
            r.case,
            count(r.killed_at),
            count(r.resumed_after),
            count(r.from_capture),
            count(r.rerequested),
            r.live_again_s
                .map_or("never".into(), |t| format!("{t:.2} s")),
            count(r.lost_messages),
            if r.books_equal { "yes" } else { "NO" }
        );
    }
    s += "  live again: from the restarted process's start until every message the line had sent was in (target 5 s)\n";
    s
}
