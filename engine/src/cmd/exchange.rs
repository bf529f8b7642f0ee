//! `tickcore exchange`: loads the session, starts the simulator, prints its summary.

use crate::cli::{parse_feed, ExchangeArgs, FeedSpec};
use crate::error::{Failure, Result};
use crate::exchange::{self, faults::Faults, history::History, ExchangeConfig, ExchangeReport};
use crate::fmt::{count, rate};
use crate::progress::Progress;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Runs the command.
pub fn run(a: &ExchangeArgs) -> Result<()> {
    let spec = match (&a.input, &a.gen) {
        (Some(p), _) => FeedSpec::File(p.clone()),
        (None, Some(g)) => parse_feed(&format!("gen:{g}")).map_err(Failure::new)?,
        (None, None) => unreachable!("clap requires --input or --gen"),
    };
    let feed = crate::cmd::run::load_feed(Some(&spec))?;
    let bytes = feed.bytes.to_vec();
    let history = History::new(bytes, a.silence)
        .map_err(|e| Failure::at(&feed.name, format!("{e} (not an ITCH 5.0 BinaryFILE?)")))?;
    if history.is_empty() {
        return Err(Failure::at(&feed.name, "no messages to serve"));
    }
    let cfg = ExchangeConfig {
        lines: a.lines.clone(),
        rerequest: a.rerequest,
        session: a.session,
        speed: a.speed,
        faults: Faults {
            drop: a.drop,
            reorder: a.reorder,
            dup: a.dup,
            kill_a_after: a.kill_line,
        },
        seed: a.seed,
        linger: std::time::Duration::from_secs_f64(a.linger_s.clamp(0.0, 86_400.0)),
        max_payload: a.max_payload,
        heartbeat: std::time::Duration::from_secs(1),
        start: None,
        sent_ns: None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    crate::cmd::run::install_signals(&stop)?;
    eprintln!(
        "tickcore: exchange serving session {} ({} messages) on {}; re-requests on {}",
        a.session,
        count(history.len()),
        a.lines
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        a.rerequest
    );
    let mut progress = Progress::new("send", history.len(), "messages");
    let r = exchange::run(&cfg, Arc::new(history), &stop, |n| progress.update(n)).map_err(|e| {
        Failure::new(format!(
            "exchange: cannot use {} or the lines: {e} (is another exchange on that port?)",
            a.rerequest
        ))
    })?;
    progress.finish();
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&r).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
    } else {
        print!("{}", summary(&r));
    }
    Ok(())
}

fn summary(r: &ExchangeReport) -> String {
    let mut s = format!(
        "session {}: {} messages in {} packets, sent in {:.2} s ({}){}\n",
        r.session,
        count(r.messages),
        count(r.packets),
        r.send_s,
        rate(r.messages as f64 / r.send_s.max(1e-9)),
        if r.stopped {
            ", stopped by a signal"
        } else {
            ""
        }
    );
    for (name, l) in ["A", "B"].iter().zip(&r.lines) {
        s += &format!(
            "  line {name}: {} datagrams sent; of {} packets {} dropped, {} reordered, {} duplicated; {} heartbeats, {} end of session\n",
            count(l.sent),
            count(l.packets),
            count(l.dropped),
            count(l.reordered),
            count(l.duplicated),
            count(l.heartbeats),
            count(l.ends)
        );
    }
    if r.silenced > 0 {
        s += &format!("  silenced: {} messages never sent\n", count(r.silenced));
    }
    let v = &r.server;
    s += &format!(
        "  re-requests: {} received, {} answered ({} messages), {} silent, {} malformed, {} for another session; {} send errors\n",
        count(v.requests),
        count(v.answered),
        count(v.messages),
        count(v.silent),
        count(v.malformed),
        count(v.wrong_session),
        count(r.send_errors)
    );
    s
}
