//! Subscription index matching cost: one topic matched against tries of 10k, 100k and 1M subscriptions.
//!
//! Subscription mix per site (a realistic IoT layout):
//! - 70% exact device filters `site/{n}/dev/{m}/temp` (one subscriber each);
//! - 20% `site/{n}/+/+/temp` (dashboards; many subscribers share this filter);
//! - 10% `site/{n}/#` (site-wide loggers; many subscribers share this filter).
//!
//! Each bench cycles through 4096 pre-built topics so the walk is not one cache-hot path:
//! - `hit`: a subscribed device's topic (reports its exact subscriber plus the site's wildcard ones);
//! - `miss`: `site/{n}/dev/{m}/humidity`, matched only by the site's `#` subscribers;
//! - `interest`: [`InterestMap::shards_for`] on `hit` topics, with the same filters spread over 16 shards.
//!
//! Run: `cargo bench --bench index`; add `-- --quick` for a short run.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardmq::index::{InterestMap, SubscriptionTrie};

/// Subscription counts benchmarked.
const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];
/// Subscriptions per site: sets how many wildcard subscribers each matching topic reports.
const SUBSCRIPTIONS_PER_SITE: usize = 100;
/// Distinct topics each bench cycles through.
const TOPICS_PER_BENCH: usize = 4096;
/// Shards the interest bench spreads subscribers over.
const SHARDS: u16 = 16;

/// One subscription of the mix: (filter, subscriber key).
fn subscription(index: usize, sites: usize) -> (String, u32) {
    let site = (index / 10) % sites;
    let filter = match index % 10 {
        0..=6 => format!("site/{site}/dev/{index}/temp"),
        7 | 8 => format!("site/{site}/+/+/temp"),
        _ => format!("site/{site}/#"),
    };
    // Benchmark sizes stay far below u32::MAX.
    (filter, index as u32)
}

/// Resident set size of this process in bytes (Linux `/proc/self/status`), 0 where unavailable.
fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<usize>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// The structures under test and the topics probed, with what building them cost.
struct Fixture {
    /// Subscriber key -> a stand-in for per-subscription options.
    trie: SubscriptionTrie<u32, u8>,
    /// The same filters, subscribers spread over [`SHARDS`] shards.
    interest: InterestMap,
    /// Topics of subscribed devices.
    hits: Vec<String>,
    /// Topics only the sites' `#` subscribers match.
    misses: Vec<String>,
    /// RSS growth while building the trie, in bytes.
    trie_bytes: usize,
    /// RSS growth while building the interest map, in bytes.
    interest_bytes: usize,
}

fn build(size: usize) -> Fixture {
    let sites = (size / SUBSCRIPTIONS_PER_SITE).max(1);
    let before = resident_bytes();
    let mut trie = SubscriptionTrie::new();
    for index in 0..size {
        let (filter, key) = subscription(index, sites);
        trie.insert(&filter, key, 1);
    }
    let after_trie = resident_bytes();
    let mut interest = InterestMap::new();
    for index in 0..size {
        let (filter, key) = subscription(index, sites);
        interest.add(&filter, (key % u32::from(SHARDS)) as u16);
    }
    let after_interest = resident_bytes();
    // Spread the probed devices over the whole key space with a multiplicative step.
    let devices = (0..TOPICS_PER_BENCH).map(|probe| {
        let index = (probe.wrapping_mul(2_654_435_761) % size) / 10 * 10;
        ((index / 10) % sites, index)
    });
    let hits = devices
        .clone()
        .map(|(site, index)| format!("site/{site}/dev/{index}/temp"))
        .collect();
    let misses = devices
        .map(|(site, index)| format!("site/{site}/dev/{index}/humidity"))
        .collect();
    Fixture {
        trie,
        interest,
        hits,
        misses,
        trie_bytes: after_trie.saturating_sub(before),
        interest_bytes: after_interest.saturating_sub(after_trie),
    }
}

fn bench_matching(c: &mut Criterion) {
    let mut group = c.benchmark_group("subscription_trie");
    group.throughput(Throughput::Elements(1));
    for size in SIZES {
        let Fixture {
            trie,
            interest,
            hits,
            misses,
            trie_bytes,
            interest_bytes,
        } = build(size);
        let mut reported = 0usize;
        hits.iter()
            .for_each(|topic| trie.for_each_match(topic, |_, _| reported += 1));
        eprintln!(
            "config: {size} subscriptions (70% site/N/dev/M/temp, 20% site/N/+/+/temp, 10% site/N/#) \
             over {} sites: {} distinct filters, {} trie nodes, trie RSS +{} B/subscription, \
             interest map RSS +{} B/subscription; {:.1} entries reported per hit; \
             {TOPICS_PER_BENCH} topics cycled; interest over {SHARDS} shards",
            (size / SUBSCRIPTIONS_PER_SITE).max(1),
            trie.filter_count(),
            trie.node_count(),
            trie_bytes / size,
            interest_bytes / size,
            reported as f64 / hits.len() as f64,
        );
        for (name, topics) in [("hit", &hits), ("miss", &misses)] {
            group.bench_with_input(BenchmarkId::new(name, size), topics, |b, topics| {
                let mut next = 0;
                b.iter(|| {
                    let topic = &topics[next % topics.len()];
                    next += 1;
                    let mut count = 0u32;
                    trie.for_each_match(black_box(topic), |key, _| count = count.wrapping_add(key));
                    count
                });
            });
        }
        group.bench_with_input(BenchmarkId::new("interest", size), &hits, |b, topics| {
            let mut next = 0;
            b.iter(|| {
                let topic = &topics[next % topics.len()];
                next += 1;
                interest.shards_for(black_box(topic)).len()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_matching);
criterion_main!(benches);
