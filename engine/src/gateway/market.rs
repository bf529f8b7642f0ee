//! The gateway's view of the market: every listed symbol, and each instrument's latest BBO and
//! top levels, as the shards last sent them. A new subscriber's snapshot and every conflated
//! frame are rendered from here, at the moment they are written.
//!
//! Owns the gateway's copies only; never asks a shard (the events carry what it needs).

use rustc_hash::FxHashMap;
use shards::events::{Bbo, Depth, Listing};

/// What the gateway knows of each instrument.
#[derive(Default)]
pub struct Market {
    by_name: FxHashMap<String, u16>,
    names: FxHashMap<u16, String>,
    bbo: FxHashMap<u16, Bbo>,
    depth: FxHashMap<u16, Depth>,
}

impl Market {
    /// Names `l.locate`.
    pub fn list(&mut self, l: &Listing) {
        let name = shards::symbol::trim(&l.stock).to_string();
        self.by_name.insert(name.clone(), l.locate);
        self.names.insert(l.locate, name);
    }

    /// Keeps `b` as its instrument's latest BBO.
    pub fn set_bbo(&mut self, b: &Bbo) {
        self.bbo.insert(b.locate, *b);
    }

    /// Keeps `d` as its instrument's latest top levels.
    pub fn set_depth(&mut self, d: &Depth) {
        self.depth.insert(d.locate, *d);
    }

    /// The locate of `symbol`.
    pub fn locate(&self, symbol: &str) -> Option<u16> {
        self.by_name.get(symbol).copied()
    }

    /// The symbol of `locate` (its number until a listing names it).
    pub fn name(&self, locate: u16) -> std::borrow::Cow<'_, str> {
        match self.names.get(&locate) {
            Some(n) => n.as_str().into(),
            None => format!("#{locate}").into(),
        }
    }

    /// The latest BBO of `locate`.
    pub fn bbo(&self, locate: u16) -> Option<&Bbo> {
        self.bbo.get(&locate)
    }

    /// The latest top levels of `locate`.
    pub fn depth(&self, locate: u16) -> Option<&Depth> {
        self.depth.get(&locate)
    }

    /// Every listed locate.
    pub fn locates(&self) -> impl Iterator<Item = u16> + '_ {
        self.names.keys().copied()
    }

    /// Every listed symbol, sorted (what an `unknown_symbol` error lists).
    pub fn known(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_name.keys().cloned().collect();
        v.sort_unstable();
        v
    }
}
