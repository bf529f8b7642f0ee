//! Decode-only throughput: walk the framing and decode every message into its typed view.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shards::itch::{decode, walk};
use shards::synth::{Profile, Scope};
use std::hint::black_box;

fn decode_only(c: &mut Criterion) {
    let n = tickcore_benches::messages_from_env(2_000_000);
    let mut g = c.benchmark_group("decode");
    g.sample_size(20);
    for scope in [Scope::M7, Scope::V3k] {
        let bytes = tickcore_benches::session(scope, Profile::Realistic, n);
        g.throughput(Throughput::Elements(n));
        g.bench_function(scope.name(), |b| {
            b.iter(|| {
                let mut acc = 0u64;
                walk(black_box(&bytes), false, |_, m| {
                    let msg = decode(m).expect("generated messages decode");
                    acc = acc.wrapping_add(msg.header().timestamp);
                })
                .expect("generated framing is valid");
                black_box(acc)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decode_only);
criterion_main!(benches);
