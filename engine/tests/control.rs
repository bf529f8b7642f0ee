//! The control core end to end: the degrade ladder under an injected delay, and the admin
//! endpoint read the way an operator's tools read it (a real Prometheus text parser, JSON).

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn tickcore() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tickcore"));
    let data = std::env::temp_dir().join(format!("tickcore-control-{}", std::process::id()));
    c.env("TICKCORE_DATA_DIR", data)
        .env_remove("TICKCORE_ADMIN_TOKEN");
    c
}

fn run_json(args: &[&str]) -> Value {
    let o = tickcore().args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn an_injected_delay_raises_the_level_within_k_intervals_and_it_falls_after_m_and_nothing_is_lost()
{
    let common = [
        "run",
        "--feed",
        "gen:m7:150k:3",
        "--speed",
        "50000/s",
        "--admin",
        "off",
        "--json",
        "--control-interval-ms",
        "100",
        "--degrade-enter",
        "2",
        "--degrade-leave",
        "3",
        // Only the apply budget is under test. The e2e budget of the configuration (100 ms at
        // p99.9) was breached by the reference run on a loaded CI machine (110 ms, 2026-12-07,
        // with the binary's other tests running beside it), which then degraded on its own.
        "--budget",
        "e2e.p999=10s",
    ];
    // The reference run's budget is one no machine's noise breaches: on a loaded CI machine a
    // 12 us budget was breached without any injected delay (2026-12-06), and the reference
    // then folded BBOs of its own.
    let mut reference = common.to_vec();
    reference.extend(["--budget", "apply.p99=10ms"]);
    let clean = run_json(&reference);
    let mut args = common.to_vec();
    args.extend(["--budget", "apply.p99=12us"]);
    args.extend(["--chaos", "apply-delay=30us@shard0:for=600ms"]);
    let hurt = run_json(&args);
    let d = &hurt["degrade"];
    let changes = d["changes"].as_array().unwrap();
    assert!(!changes.is_empty(), "the delay was seen: {d}");
    let first = &changes[0];
    assert_eq!(
        (first["from"].as_u64(), first["to"].as_u64()),
        (Some(0), Some(1)),
        "{d}"
    );
    assert!(
        first["reason"].as_str().unwrap().contains("apply.p99"),
        "{first}"
    );
    // Within K intervals of the delay starting (plus the generation and start-up before it).
    assert!(first["at_s"].as_f64().unwrap() < 3.0, "{first}");
    assert!(
        changes
            .iter()
            .any(|c| c["to"].as_u64() < c["from"].as_u64()),
        "the level came down after the delay ended: {d}"
    );
    assert_eq!(d["level"], 0, "back to normal at the end: {d}");
    assert!(d["breaches"]["apply.p99"].as_u64().unwrap() >= 2, "{d}");
    let t = d["seconds_at_level"].as_array().unwrap();
    assert!(t[1].as_f64().unwrap() > 0.0, "{d}");
    // No event lost: trades, bars, breaks equal; every BBO change is sent or counted coalesced.
    for k in ["trades", "bars", "breaks"] {
        assert_eq!(hurt["consumer"][k], clean["consumer"][k], "{k}");
    }
    let bbos = |v: &Value| {
        let s = &v["shards"][0];
        s["bbos"].as_u64().unwrap() + s["bbos_coalesced"].as_u64().unwrap()
    };
    assert_eq!(
        bbos(&hurt),
        bbos(&clean),
        "sent or coalesced, every BBO change"
    );
    assert_eq!(
        clean["degrade"]["changes"].as_array().unwrap().len(),
        0,
        "{}",
        clean["degrade"]
    );
}

/// A run with its admin endpoint on an ephemeral port; the address it printed.
fn start(args: &[&str], token: Option<&str>) -> (Child, String) {
    let mut c = tickcore();
    c.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    if let Some(t) = token {
        c.env("TICKCORE_ADMIN_TOKEN", t);
    }
    let mut child = c.spawn().unwrap();
    let addr = admin_addr(&mut child);
    (child, addr)
}

/// The admin address a run prints on stderr; the rest of its stderr is read and dropped.
fn admin_addr(child: &mut Child) -> String {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let l = lines
            .next()
            .expect("the run printed its admin address")
            .unwrap();
        if let Some(a) = l.strip_prefix("tickcore: admin endpoint on http://") {
            break a.to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    addr
}

/// One HTTP request; (status, body).
fn http(addr: &str, method: &str, path: &str, body: &str, auth: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = auth.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn the_admin_endpoint_serves_metrics_status_snapshots_and_budgets() {
    let (mut child, addr) = start(
        &[
            "run",
            "--feed",
            "gen:m7:300k:2",
            "--speed",
            "200000/s",
            "--admin",
            "127.0.0.1:0",
            "--admin-linger-s",
            "30",
        ],
        None,
    );
    // Let the replay get going, so every stage has samples.
    std::thread::sleep(Duration::from_millis(2500));
    let (st, text) = http(&addr, "GET", "/metrics", "", None);
    assert_eq!(st, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let names: std::collections::BTreeSet<&str> =
        scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for want in [
        "tickcore_stage_latency_ns",
        "tickcore_core_items_total",
        "tickcore_ring_full_waits_total",
        "tickcore_ring_in_flight",
        "tickcore_degrade_level",
        "tickcore_budget_breaches_total",
        "tickcore_degrade_seconds_total",
        "tickcore_uptime_seconds",
    ] {
        assert!(names.contains(want), "{want} in {names:?}");
    }
    let e2e = scrape
        .samples
        .iter()
        .find(|s| s.metric == "tickcore_stage_latency_ns" && s.labels.get("stage") == Some("e2e"));
    assert!(
        matches!(
            e2e.map(|s| &s.value),
            Some(prometheus_parse::Value::Summary(_))
        ),
        "{e2e:?}"
    );
    let (st, status) = http(&addr, "GET", "/status", "", None);
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&status).unwrap();
    let cores: Vec<&str> = v["cores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cores, ["ingress", "shard0"]);
    assert!(
        v["cores"][1]["stages"]["apply"]["count"].as_u64().unwrap() > 0,
        "{v}"
    );
    assert!(v["config"].as_str().unwrap().contains("feed_cpu"));
    assert!(v["uptime_s"].as_f64().unwrap() > 0.0);
    let (st, snap) = http(&addr, "GET", "/snapshot/AAPL", "", None);
    assert_eq!(st, 200, "{snap}");
    let s: Value = serde_json::from_str(&snap).unwrap();
    assert_eq!(s["symbol"], "AAPL", "{s}");
    assert_eq!(http(&addr, "GET", "/snapshot/ZZZZ", "", None).0, 404);
    let (st, why) = http(&addr, "PUT", "/budgets", "apply.p99=fast", None);
    assert_eq!(st, 400);
    assert!(why.contains("does not start with a number"), "{why}");
    let (st, why) = http(&addr, "PUT", "/budgets", "warp.p99=1us", None);
    assert_eq!((st, why.contains("is not a stage")), (400, true), "{why}");
    let (st, b) = http(&addr, "PUT", "/budgets", "e2e.p99=3ms, hop.p50=1ms", None);
    assert_eq!(st, 200, "{b}");
    let b: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        (b["e2e.p99"].as_str(), b["hop.p50"].as_str()),
        (Some("3ms"), Some("1ms"))
    );
    assert_eq!(http(&addr, "GET", "/budgets", "", None).1, b.to_string());
    assert_eq!(http(&addr, "GET", "/nowhere", "", None).0, 404);
    assert_eq!(http(&addr, "DELETE", "/metrics", "", None).0, 405);
    // The snapshot round trips were timed by the control core.
    let (_, status) = http(&addr, "GET", "/status", "", None);
    let v: Value = serde_json::from_str(&status).unwrap();
    assert!(
        v["snapshot"]["count"].as_u64().unwrap() >= 1,
        "{}",
        v["snapshot"]
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `args` with its admin endpoint on an ephemeral port, doing `meanwhile(addr)` once the
/// endpoint is up; the run's `--json` summary.
fn run_with_admin(args: &[&str], meanwhile: impl FnOnce(&str)) -> Value {
    let mut c = tickcore();
    c.args(args)
        .args(["--admin", "127.0.0.1:0", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let addr = admin_addr(&mut child);
    meanwhile(&addr);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What a run did to the feed: messages and events per shard (batching may differ).
fn feed_outcome(v: &Value) -> Vec<String> {
    v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {} {} {} {}",
                s["messages"], s["trades"], s["bbos"], s["bars"], s["breaks"]
            )
        })
        .chain([v["messages"].to_string()])
        .collect()
}

#[test]
fn a_hundred_idle_connections_neither_stop_the_feed_nor_the_endpoint() {
    let args = ["run", "--feed", "gen:m7:400k:4", "--speed", "400000/s"];
    let clean = run_with_admin(&args, |_| {});
    let held = run_with_admin(&args, |addr| {
        // Connected, silent: until 2026-12-05 each held the feed for 200 ms.
        let idle: Vec<TcpStream> = (0..100)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        for _ in 0..3 {
            let (st, text) = http(addr, "GET", "/metrics", "", None);
            assert_eq!(st, 200);
            assert!(text.contains("tickcore_admin_connections"), "{text}");
        }
        drop(idle);
    });
    assert_eq!(feed_outcome(&held), feed_outcome(&clean));
    assert_eq!(held["stopped"], false);
}

#[test]
fn the_endpoint_answers_while_a_realtime_replay_waits_for_its_next_message() {
    // A generated session opens with hours of quiet feed time: at real time the ingress
    // waits for the open, and the endpoint must answer meanwhile.
    let (mut child, addr) = start(
        &[
            "run",
            "--feed",
            "gen:m7:50k:1",
            "--speed",
            "realtime",
            "--admin",
            "127.0.0.1:0",
        ],
        None,
    );
    for path in ["/status", "/metrics", "/budgets"] {
        let (st, _) = http(&addr, "GET", path, "", None);
        assert_eq!(st, 200, "{path}");
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_client_that_never_finishes_its_request_is_cut_off() {
    let (mut child, addr) = start(
        &[
            "run",
            "--feed",
            "gen:f2:20k:1",
            "--admin",
            "127.0.0.1:0",
            "--admin-linger-s",
            "30",
        ],
        None,
    );
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /metr").unwrap();
    // The server closes it at its head timeout (2 s); the read waits for that event.
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = Vec::new();
    let got = slow.read_to_end(&mut buf);
    assert!(
        got.is_ok()
            || got
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "cut off, not left hanging: {got:?}"
    );
    // ... and counted.
    let (_, text) = http(&addr, "GET", "/metrics", "", None);
    let line = text
        .lines()
        .find(|l| l.starts_with("tickcore_admin_timed_out_total "))
        .unwrap_or_default()
        .to_string();
    assert!(line.ends_with(" 1"), "{line}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_public_bind_needs_a_token_and_every_request_must_carry_it() {
    let o = tickcore()
        .args(["run", "--feed", "gen:f2:10k:1", "--admin", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("TICKCORE_ADMIN_TOKEN"));
    let (mut child, addr) = start(
        &[
            "run",
            "--feed",
            "gen:f2:20k:1",
            "--admin",
            "0.0.0.0:0",
            "--admin-linger-s",
            "30",
        ],
        Some("s3cret"),
    );
    let local = format!("127.0.0.1:{}", addr.rsplit(':').next().unwrap());
    assert_eq!(http(&local, "GET", "/status", "", None).0, 401);
    assert_eq!(http(&local, "GET", "/status", "", Some("wrong")).0, 401);
    assert_eq!(http(&local, "GET", "/status", "", Some("s3cret")).0, 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn bad_budgets_and_chaos_flags_are_one_clear_error() {
    for (args, says) in [
        (vec!["--budget", "apply.p98=1us"], "is not a percentile"),
        (vec!["--budget", "fetch.p99=1us"], "is not a stage"),
        (
            vec!["--chaos", "apply-delay=5us@shard7"],
            "shard7 does not exist",
        ),
        (
            vec!["--chaos", "drop-everything"],
            "the only chaos is apply-delay",
        ),
        (vec!["--admin", "nowhere"], "is not an address"),
    ] {
        let mut a = vec!["run", "--feed", "gen:f2:10k:1", "--admin", "off"];
        if args[0] == "--admin" {
            a.truncate(3);
        }
        a.extend(&args);
        let o = tickcore().args(&a).output().unwrap();
        assert!(!o.status.success(), "{a:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{a:?}: {err}");
    }
}
