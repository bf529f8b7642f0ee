//! Helpers shared by the integration tests that read what `tickcore run --events` wrote.

/// Trades and the sum of their match numbers, from an event file (`T` lines; the match number
/// is the fifth field).
pub fn trades_in_events(events: &std::path::Path) -> (i64, i64) {
    let text = std::fs::read_to_string(events).unwrap();
    let m: Vec<i64> = text
        .lines()
        .filter(|l| l.starts_with('T'))
        .map(|l| l.split(' ').nth(4).unwrap().parse().unwrap())
        .collect();
    (m.len() as i64, m.iter().sum())
}
