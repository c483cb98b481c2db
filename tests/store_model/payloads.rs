//! Random events, each shape with a fixed probability, from the seeded
//! generator: a history's events are a pure function of its seed.

use std::collections::BTreeMap;

use dynamo_es::testing::fixtures::Rng;
use serde_json::{json, Value};

use super::aggregate::{FlatEvent, ModelEvent};

/// Helpers over the fixtures' generator.
pub trait Draw {
    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool;
    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: usize, hi: usize) -> usize;
    /// One of `items`.
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T;
}

impl Draw for Rng {
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn between(&mut self, lo: usize, hi: usize) -> usize {
        let span = u64::try_from(hi.saturating_sub(lo) + 1).unwrap();
        lo + usize::try_from(self.below(span)).unwrap()
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.between(0, items.len() - 1)]
    }
}

/// Words notes are made of: currency codes (what a wrong dictionary swaps),
/// accents, CJK and emoji.
pub const WORDS: &[&str] = &[
    "EUR", "CHF", "USD", "payment", "refund", "invoice", "Zürich", "東京", "🎉", "fee", "net",
    "gross", "-", "#42",
];

/// A note of `words` words.
pub fn note(rng: &mut Rng, words: usize) -> String {
    (0..words)
        .map(|_| *rng.pick(WORDS))
        .collect::<Vec<_>>()
        .join(" ")
}

const RATIOS: &[f64] = &[0.5, 0.1 + 0.2, -0.0, 5e-324, 1e300, -1.25];

/// What events a write path can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// A typed write (`DynamoStore` through `CqrsFramework`): every shape.
    Typed,
    /// A write of `serde_json::Value`s (the repository's `persist`, or
    /// cqrs-es's `PersistedEventStore`): no repeated keys, which a `Value`
    /// cannot hold.
    Value,
}

/// How large a `Big` event is: past `cap` (the codec's decoded-size cap)
/// when one is set, else a few KB.
pub fn big_len(rng: &mut Rng, cap: Option<usize>) -> usize {
    match cap {
        Some(cap) => cap + rng.between(1, 3000),
        None => rng.between(2000, 12_000),
    }
}

/// True if `MODEL_WITHOUT`, a comma-separated list, turns `what` off:
/// `repeated-keys` (flattened maps naming a field), `big` (large events),
/// `cap` (small decoded-size caps), `deep` (nested payloads), `faults`,
/// `unknown-outcome` (faults after which a write may have been applied,
/// except a lone lost response), `collisions` (one dictionary id, other
/// content, in several tables), `snapshot-dictionary` (dictionaries in
/// the codec, so in snapshots). To look for other defects while known ones
/// are being fixed; nothing is off by default, and turning something off
/// changes the histories of the seeds.
pub fn without(what: &str) -> bool {
    std::env::var("MODEL_WITHOUT").is_ok_and(|list| list.split(',').any(|w| w.trim() == what))
}

/// One random event.
pub fn event(rng: &mut Rng, carrier: Carrier, cap: Option<usize>) -> ModelEvent {
    let mut roll = rng.below(100);
    if (73..=84).contains(&roll) && without("big") || roll > 84 && without("deep") {
        roll = 0;
    }
    match roll {
        0..=54 => {
            let words = if rng.chance(15) {
                rng.between(150, 400)
            } else {
                rng.between(1, 12)
            };
            ModelEvent::Plain {
                amount: i64::try_from(rng.below(2_000_001)).unwrap() - 1_000_000,
                note: note(rng, words),
                ratio: *rng.pick(RATIOS),
            }
        }
        55..=72 => {
            let mut extra = BTreeMap::new();
            for _ in 0..rng.between(0, 3) {
                extra.insert(format!("k{}", rng.below(5)), json!(note(rng, 2)));
            }
            let amount = i64::try_from(rng.below(1000)).unwrap();
            if carrier == Carrier::Typed && rng.chance(50) && !without("repeated-keys") {
                // The flattened map names the struct's own field.
                extra.insert("amount".into(), json!(amount + 1));
            }
            ModelEvent::Flat(FlatEvent { amount, extra })
        }
        73..=84 => {
            let len = big_len(rng, cap);
            let mut text = String::with_capacity(len + 16);
            while text.len() < len {
                text.push_str(&note(rng, 1));
                text.push(' ');
            }
            ModelEvent::Big { text }
        }
        _ => ModelEvent::Deep {
            tree: nested(rng.between(100, 160), rng),
        },
    }
}

/// A value nested `depth` levels: arrays and objects, a leaf at the bottom.
pub fn nested(depth: usize, rng: &mut Rng) -> Value {
    let mut value = json!(note(rng, 1));
    for level in 0..depth {
        value = if level % 3 == 0 {
            json!({ "n": value })
        } else {
            json!([value])
        };
    }
    value
}
