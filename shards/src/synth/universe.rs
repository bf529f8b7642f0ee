//! Instrument universes (`f2`, `m7`, `n100`, `v3k`): symbols, locates, reference prices and how
//! activity is spread across names.

use super::rng::Rng;
use crate::itch::Stock;
use crate::symbol::pad;

/// The instrument universes the research platform uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Two instruments.
    F2,
    /// The seven large US tech names.
    M7,
    /// One hundred instruments.
    N100,
    /// 3,500 instruments.
    V3k,
}

impl Scope {
    /// Every scope, smallest first.
    pub const ALL: [Scope; 4] = [Scope::F2, Scope::M7, Scope::N100, Scope::V3k];

    /// The scope's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scope::F2 => "f2",
            Scope::M7 => "m7",
            Scope::N100 => "n100",
            Scope::V3k => "v3k",
        }
    }

    /// Parses a scope name.
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.name() == s)
    }

    /// Number of instruments.
    pub fn instruments(self) -> usize {
        match self {
            Scope::F2 => 2,
            Scope::M7 => 7,
            Scope::N100 => 100,
            Scope::V3k => 3_500,
        }
    }
}

const M7: [(&str, u32); 7] = [
    ("AAPL", 19_000),
    ("MSFT", 42_000),
    ("AMZN", 18_500),
    ("GOOGL", 17_000),
    ("META", 50_000),
    ("NVDA", 12_000),
    ("TSLA", 25_000),
];

/// Large NASDAQ names after the seven, to fill `n100` and open `v3k`.
const MORE: &str = "AVGO COST NFLX AMD PEP ADBE CSCO TMUS INTC CMCSA QCOM TXN AMGN INTU HON AMAT \
    ISRG BKNG SBUX MDLZ GILD ADI VRTX ADP REGN LRCX PANW MU SNPS KLAC CDNS MELI PYPL ASML MAR CSX \
    ORLY MNST CTAS ABNB FTNT CHTR NXPI PCAR MRVL WDAY KDP ADSK CPRT ROST PAYX AEP ODFL KHC DXCM \
    MCHP EXC IDXX LULU AZN FAST BKR CRWD CTSH EA VRSK XEL GEHC CSGP ON TTD DDOG ANSS FANG BIIB ZS \
    TEAM CCEP GFS CDW WBD MDB ILMN DLTR WBA SIRI LCID RIVN ARM SMCI PDD GOOG ZM";

/// One instrument of a universe.
#[derive(Debug, Clone)]
pub struct Instrument {
    /// Stock locate (1-based, alphabetical, as NASDAQ assigns them).
    pub locate: u16,
    /// Symbol, space padded.
    pub stock: Stock,
    /// Reference price in cents (ticks of $0.01).
    pub anchor_ticks: u32,
    /// Share of the session's order flow.
    pub weight: f64,
}

/// Builds the universe of `scope`; the seed decides prices (outside `m7`) and which names are busiest.
pub fn universe(scope: Scope, rng: &mut Rng) -> Vec<Instrument> {
    let n = scope.instruments();
    let mut names: Vec<(String, u32)> = M7.iter().map(|&(s, p)| (s.to_string(), p)).collect();
    for s in MORE.split_whitespace() {
        names.push((s.to_string(), 0));
    }
    let mut i = 0u32;
    while names.len() < n {
        let code = synthetic_symbol(i);
        i += 1;
        if !names.iter().any(|(s, _)| *s == code) {
            names.push((code, 0));
        }
    }
    names.truncate(n);
    for (_, p) in names.iter_mut().filter(|(_, p)| *p == 0) {
        // Log-uniform between $10 and $500.
        *p = (1_000.0 * 50f64.powf(rng.unit())) as u32;
    }
    // Zipf(1) activity over a seeded ordering of names: a few carry most of the flow.
    let mut rank: Vec<usize> = (0..n).collect();
    for k in (1..n).rev() {
        rank.swap(k, rng.below(k as u64 + 1) as usize);
    }
    names.sort();
    names
        .into_iter()
        .enumerate()
        .map(|(k, (sym, p))| Instrument {
            locate: k as u16 + 1,
            stock: pad(&sym).expect("universe symbols are valid"),
            anchor_ticks: p,
            weight: 1.0 / (rank[k] + 1) as f64,
        })
        .collect()
}

/// A four-letter symbol from an index, for names beyond the real lists.
fn synthetic_symbol(i: u32) -> String {
    let mut x = i + 26 * 26 * 26; // start at "BAAA" so that no code is shorter than four
    let mut s = Vec::new();
    while x > 0 {
        s.push(b'A' + (x % 26) as u8);
        x /= 26;
    }
    s.reverse();
    String::from_utf8(s).expect("ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn universes_have_the_right_unique_names() {
        for scope in Scope::ALL {
            let u = universe(scope, &mut Rng::new(1));
            assert_eq!(u.len(), scope.instruments());
            let mut syms: Vec<_> = u.iter().map(|i| i.stock).collect();
            syms.sort();
            syms.dedup();
            assert_eq!(syms.len(), u.len(), "{scope:?} symbols are unique");
            assert!(
                u.windows(2).all(|w| w[0].stock < w[1].stock),
                "locates alphabetical"
            );
            assert!(u.iter().all(|i| i.anchor_ticks >= 1_000));
        }
        let m7: Vec<_> = universe(Scope::M7, &mut Rng::new(9))
            .iter()
            .map(|i| crate::symbol::trim(&i.stock).to_string())
            .collect();
        assert_eq!(
            m7,
            ["AAPL", "AMZN", "GOOGL", "META", "MSFT", "NVDA", "TSLA"]
        );
    }
}
