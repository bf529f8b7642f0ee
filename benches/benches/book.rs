//! Book building (decode + apply, full L3) per scope and depth profile, with the prefetch
//! pipeline as timing decides, always and never.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use shards::book::{Books, Prefetch};
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
        for (mode, prefetch) in [
            ("measured", Prefetch::Measured),
            ("always", Prefetch::Always),
            ("never", Prefetch::Never),
        ] {
            g.bench_function(format!("{name}/{mode}"), |b| {
                b.iter_batched_ref(
                    || {
                        let mut books = Books::default();
                        books.set_prefetch(prefetch);
                        // As `tickcore book` does, before the clock.
                        books.reserve_for_session(&bytes);
                        books
                    },
                    |books| {
                        books.replay(&bytes, false, &mut (), |_, _| {}).unwrap();
                        black_box(books.live_orders())
                    },
                    BatchSize::LargeInput,
                )
            });
        }
    }
    g.finish();
}

criterion_group!(benches, build);
criterion_main!(benches);
