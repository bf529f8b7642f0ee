//! The PostgreSQL sink against the real server on this machine (127.0.0.1:5432, trust auth), in a
//! database of its own that the test creates and drops. `TICKCORE_TEST_PG` overrides the server.

use shards::bars::Bar;
use shards::events::{Trade, TradeKind};
use storage_adapters::pg::{BarRow, PgSink, TradeRow};
use tokio_postgres::NoTls;

fn server() -> String {
    std::env::var("TICKCORE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A fresh database for one test, dropped when the guard goes.
struct TestDb {
    name: String,
}

impl TestDb {
    async fn new(tag: &str) -> TestDb {
        let name = format!("tickcore_test_{tag}_{}", std::process::id());
        let admin = admin().await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        TestDb { name }
    }
    fn url(&self) -> String {
        format!("{}/{}", server(), self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A thread with a runtime of its own: Drop cannot await, and may run inside a runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let admin = admin().await;
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            });
        })
        .join();
    }
}

async fn admin() -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(&format!("{}/postgres", server()), NoTls)
        .await
        .expect("PostgreSQL answers on 127.0.0.1:5432 (see ../shared/services.md)");
    tokio::spawn(conn);
    c
}

fn trades(n: u64) -> Vec<TradeRow> {
    (1..=n)
        .map(|m| TradeRow {
            symbol: *b"AAPL    ",
            trade: Trade {
                locate: 1,
                timestamp: 34_200_000_000_000 + m * 1000,
                match_number: m * 3,
                price: 1_872_300 + (m % 50) as u32,
                shares: 100 + m % 7,
                side: if m % 2 == 0 { b'B' } else { b'S' },
                printable: m % 11 != 0,
                kind: TradeKind::Executed,
            },
        })
        .collect()
}

fn bars() -> Vec<BarRow> {
    (0..5u64)
        .map(|i| BarRow {
            symbol: *b"MSFT    ",
            bar: Bar {
                locate: 2,
                interval_s: 60,
                start: 34_200_000_000_000 + i * 60_000_000_000,
                open: 4_000_000,
                high: 4_010_000,
                low: 3_990_000,
                close: 4_005_000,
                volume: 1000,
                notional: 4_001_234 * 1000,
                trades: 9,
            },
        })
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn trades_and_bars_land_once_however_often_they_are_sent() {
    let db = TestDb::new("write").await;
    let mut sink = PgSink::connect(&db.url(), None, "2026-12-02")
        .await
        .unwrap();
    let t = trades(5_000);
    let b = bars();
    assert_eq!(sink.write_rows(&t, &b).await.unwrap(), (5_000, 5));
    // A retried batch, and a second replay of the same feed: nothing new.
    assert_eq!(sink.write_rows(&t[..1000], &b).await.unwrap(), (0, 0));
    drop(sink);
    let mut again = PgSink::connect(&db.url(), None, "2026-12-02")
        .await
        .unwrap();
    assert_eq!(again.write_rows(&t, &b).await.unwrap(), (0, 0));
    let c = again.client();
    let row = c
        .query_one(
            "SELECT count(*), sum(match_number)::int8 FROM tickcore.trades",
            &[],
        )
        .await
        .unwrap();
    let want: i64 = t.iter().map(|r| r.trade.match_number as i64).sum();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (5_000, want));
    let row = c
        .query_one(
            "SELECT price::text, side, kind, printable FROM tickcore.trades WHERE match_number = 33",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "187.2311");
    assert_eq!(
        (row.get::<_, String>(1), row.get::<_, String>(2)),
        ("S".into(), "E".into())
    );
    assert!(!row.get::<_, bool>(3), "match 33 is m = 11: not printable");
    let row = c
        .query_one("SELECT vwap::text FROM tickcore.bars LIMIT 1", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "400.1234");
    let parts = c
        .query_one(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'tickcore.trades'::regclass",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(parts.get::<_, i64>(0), 1, "one partition per session date");
    let v = c
        .query_one("SELECT max(version) FROM tickcore.schema_migrations", &[])
        .await
        .unwrap();
    assert_eq!(v.get::<_, i32>(0), 1);
    drop(again);
    drop(db);
}

#[test]
fn today_is_a_date() {
    let d = storage_adapters::pg::today_utc();
    assert_eq!(d.len(), 10, "{d}");
    assert!(
        d.as_str() > "2024-01-01" && d.as_str() < "2100-01-01",
        "{d}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn bad_urls_and_refusals_are_one_clear_message() {
    let missing = format!("{}/no_such_database_here", server());
    let cases = [
        ("postgres://postgres@127.0.0.1:1/test", "connect"),
        ("not a url", "is not valid"),
        (missing.as_str(), "does not exist"),
    ];
    for (url, want) in cases {
        let e = PgSink::connect(url, None, "2026-12-02")
            .await
            .err()
            .expect("fails");
        assert!(e.to_string().contains(want), "{url}: {e}");
    }
    let db = TestDb::new("date").await;
    let e = PgSink::connect(&db.url(), None, "12/02/2026")
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("YYYY-MM-DD"), "{e}");
}

#[tokio::test(flavor = "current_thread")]
async fn prices_and_dates_survive_the_direct_binary_copy_exactly() {
    let db = TestDb::new("numeric").await;
    let mut sink = PgSink::connect(&db.url(), None, "2024-02-29")
        .await
        .unwrap();
    let prices: [u32; 7] = [0, 1, 100, 10_000, 1_872_300, 100_000_000, u32::MAX];
    let mut t = trades(prices.len() as u64);
    for (r, p) in t.iter_mut().zip(prices) {
        r.trade.price = p;
    }
    assert_eq!(sink.write_rows(&t, &[]).await.unwrap(), (7, 0));
    let rows = sink
        .client()
        .query(
            "SELECT price::text, session_date::text FROM tickcore.trades ORDER BY match_number",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let want: Vec<(String, String)> = prices
        .iter()
        .map(|p| {
            (
                format!("{}.{:04}", p / 10_000, p % 10_000),
                "2024-02-29".into(),
            )
        })
        .collect();
    assert_eq!(got, want);
}
