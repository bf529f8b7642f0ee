//! Book building (decode + apply, full L3) per scope and depth profile, with and without the
//! prefetch pipeline.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use shards::book::Books;
use shards::itch::walk;
use shards::synth::{Profile, Scope};
use std::hint::black_box;

fn build(c: &mut Criterion) {
    let n = tickcore_benches::messages_from_env(2_000_000);
    let mut g = c.benchmark_group("book");
    g.sample_size(10);
    for (scope, profile) in [
        (Scope::M7, Profile::Realistic),
        (Scope::M7, Profile::Deep),
        (Scope::V3k, Profile::Realistic),
        (Scope::V3k, Profile::Deep),
        (Scope::M7, Profile::Uniform),
        (Scope::V3k, Profile::Uniform),
    ] {
        let bytes = tickcore_benches::session(scope, profile, n);
        g.throughput(Throughput::Elements(n));
        let name = format!("{}-{}", scope.name(), profile.name());
        g.bench_function(format!("{name}/pipelined"), |b| {
            b.iter_batched_ref(
                Books::default,
                |books| {
                    books.replay(&bytes, false, &mut (), |_, _| {}).unwrap();
                    black_box(books.live_orders())
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_function(format!("{name}/sequential"), |b| {
            b.iter_batched_ref(
                Books::default,
                |books| {
                    walk(&bytes, false, |_, m| books.apply(m, &mut ()).unwrap()).unwrap();
                    black_box(books.live_orders())
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, build);
criterion_main!(benches);
