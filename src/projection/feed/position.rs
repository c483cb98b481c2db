//! How far a feed got in one slice, and which of a read's events it may
//! deliver: the pure part of the feed, tested without a server.
//!
//! The proof that nothing is skipped or repeated is on [`SlicePosition`].

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

/// Where a feed projection starts in a slice it has no saved position for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FeedStart {
    /// Every event in the index.
    #[default]
    Beginning,
    /// The events committed at or after this time.
    At(SystemTime),
}

/// One event as the index returned it, reduced to what ordering needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    /// The aggregate id.
    pub(crate) aggregate_id: String,
    /// The event's sequence.
    pub(crate) sequence: usize,
    /// Its commit time, microseconds since the epoch.
    pub(crate) micros: u64,
    /// For the aggregate's tombstone (its deletion, not an event): the
    /// sequence of the last event it deleted.
    pub(crate) deleted_through: Option<usize>,
}

/// What to do with the events of one read.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Indexes into the read's events to deliver, in delivery order: by
    /// aggregate (ordered by their first event's commit time), each in
    /// sequence order.
    pub(crate) deliver: Vec<usize>,
    /// Events already delivered, dropped.
    pub(crate) duplicates: usize,
    /// The earliest commit time among the held events, if any.
    pub(crate) held_from: Option<u64>,
    /// Per held aggregate whose last delivered sequence is known: the
    /// sequence missing before its held events (the reader checks that it
    /// is only late, not lost).
    pub(crate) missing: Vec<(String, usize)>,
    /// Aggregates not in `recent` whose first event here is past sequence
    /// 1, with that sequence: the reader must look up their last delivered
    /// sequence and call [`SlicePosition::plan`] again with it.
    pub(crate) unknown: Vec<(String, usize)>,
}

/// Per aggregate: runs of sequences (first, last) a tombstone deleted and
/// the table no longer holds.
#[derive(Debug, Default, Clone)]
pub(crate) struct Gone(HashMap<String, Vec<(usize, usize)>>);

impl Gone {
    /// The first sequence at or after `next` of `aggregate_id` that is not
    /// gone.
    pub(crate) fn skip(&self, aggregate_id: &str, mut next: usize) -> usize {
        let Some(runs) = self.0.get(aggregate_id) else {
            return next;
        };
        while let Some(&(_, last)) = runs
            .iter()
            .find(|(first, last)| *first <= next && next <= *last)
        {
            next = last + 1;
        }
        next
    }

    pub(super) fn insert(&mut self, aggregate_id: &str, first: usize, last: usize) {
        self.0
            .entry(aggregate_id.to_string())
            .or_default()
            .push((first, last));
    }
}

/// A feed's position in one slice.
///
/// A [`SlicePosition`] holds a **watermark** `W` (microseconds of commit
/// time) and, for every aggregate with a delivered event whose commit time
/// is at or after `W`, its last delivered sequence (`recent`).
///
/// **Invariant** (given that every event is visible in the index within
/// the feed's window of its commit time): every event of the slice with a
/// commit time before `W` has been delivered, and for each aggregate in
/// `recent`, exactly its events up to the recorded sequence have.
///
/// *Why it holds.* A read asks the index for every event at or after `W`
/// and plans them: grouped by aggregate, in
/// sequence order, an aggregate's run starts right after its last delivered
/// sequence (one in `recent`; or sequence 1; or, for an aggregate not in
/// `recent`, after a predecessor the reader looked up and found committed
/// before `W`, hence delivered). Events at or below the last delivered
/// sequence are duplicates and dropped; a run that would skip a sequence
/// is held back whole (its predecessor is not visible yet). After the
/// delivery, the position moves `W` to the earliest
/// of: the read's time minus the window (later events may not be visible
/// yet), the commit time of the first held event, and the commit time of
/// the last event read if the read stopped at a page limit. Every event
/// before that is either delivered or was visible and not held, so the
/// invariant holds again; `recent` then drops aggregates whose delivered
/// events are all before the new `W` (they are never read again). A held
/// run whose missing predecessor was committed below the band a read
/// starts in (it became visible later than twice the window) is never
/// delivered past: the reader reads the missing events from the table by
/// key and delivers them first (or stops with
/// [`Error::FeedGap`](crate::projection::Error::FeedGap) if the table does
/// not hold them, sliced). An aggregate's tombstone is planned as its next
/// sequence; the sequences before it that its deletion removed from the
/// table are skipped only when the reader found them gone
/// (`feed::deletion`), as if delivered: nothing can ever deliver them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlicePosition {
    /// Every event before this commit time (microseconds) was delivered.
    pub watermark: u64,
    /// Last delivered sequence, and the latest commit time among its
    /// delivered events, per aggregate with a delivered event at or after
    /// the watermark.
    pub recent: BTreeMap<String, (usize, u64)>,
    /// The commit time up to which the last read saw every event visible
    /// then (its read time, or where it stopped at a page limit): an event
    /// delivered later with an earlier commit time became visible late.
    pub seen_to: u64,
    /// Where the feed started (microseconds; 0: the beginning): an
    /// aggregate never delivered starts with its first event committed at
    /// or after it.
    pub origin: u64,
}

impl SlicePosition {
    /// The position a feed starting at `start` begins a slice with.
    #[must_use]
    pub fn start(start: FeedStart) -> Self {
        match start {
            FeedStart::Beginning => SlicePosition::default(),
            FeedStart::At(time) => SlicePosition::from_micros(crate::slice::micros(time)),
        }
    }

    /// A position from which every event at or after `micros` is new.
    #[must_use]
    pub fn from_micros(micros: u64) -> Self {
        SlicePosition {
            watermark: micros,
            recent: BTreeMap::new(),
            seen_to: 0,
            origin: micros,
        }
    }

    /// Decides which of `events` to deliver. `known` holds the last
    /// delivered sequence of aggregates not in `recent`, as the feed's
    /// per-aggregate records say (0: none delivered).
    /// `gone` holds sequences a tombstone read here deleted and the table
    /// no longer holds (see `feed::deletion`): they are no gap.
    pub(crate) fn plan(
        &self,
        events: &[Seen],
        known: &HashMap<String, usize>,
        gone: &Gone,
    ) -> Plan {
        let mut by_aggregate: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (index, event) in events.iter().enumerate() {
            by_aggregate
                .entry(&event.aggregate_id)
                .or_default()
                .push(index);
        }
        let mut plan = Plan::default();
        let mut runs: Vec<(u64, Vec<usize>)> = Vec::new();
        for (aggregate, mut indexes) in by_aggregate {
            indexes.sort_by_key(|&i| events[i].sequence);
            indexes.dedup_by_key(|i| events[*i].sequence);
            let delivered = match (self.recent.get(aggregate), known.get(aggregate)) {
                (Some(&(sequence, _)), _) => Some(sequence),
                (None, Some(&sequence)) => Some(sequence),
                // Never delivered, if its first event is here.
                (None, None) if events[indexes[0]].sequence <= 1 => Some(0),
                (None, None) => {
                    plan.unknown
                        .push((aggregate.to_string(), events[indexes[0]].sequence));
                    continue;
                }
            };
            let mut next = delivered.map(|d| d + 1);
            let mut run = Vec::new();
            for &index in &indexes {
                let event = &events[index];
                next = next.map(|n| gone.skip(aggregate, n));
                match next {
                    Some(n) if event.sequence < n => plan.duplicates += 1,
                    Some(n) if event.sequence == n => {
                        run.push(index);
                        next = Some(n + 1);
                    }
                    _ => {
                        // A gap (or an unknown start): this event and the
                        // rest of the aggregate wait for a later read.
                        if let Some(n) = next {
                            plan.missing.push((aggregate.to_string(), n));
                        }
                        let held = indexes
                            .iter()
                            .filter(|&&i| events[i].sequence >= event.sequence)
                            .map(|&i| events[i].micros)
                            .min()
                            .unwrap_or(event.micros);
                        plan.held_from = Some(plan.held_from.map_or(held, |h| h.min(held)));
                        break;
                    }
                }
            }
            if let Some(&first) = run.first() {
                runs.push((events[first].micros, run));
            }
        }
        runs.sort_by_key(|(micros, _)| *micros);
        plan.deliver = runs.into_iter().flat_map(|(_, run)| run).collect();
        plan
    }

    /// Records `events[i]` for every `i` in `delivered` as delivered.
    pub(crate) fn record(&mut self, events: &[Seen], delivered: &[usize]) {
        for &index in delivered {
            let event = &events[index];
            let entry = self
                .recent
                .entry(event.aggregate_id.clone())
                .or_insert((0, 0));
            // The latest commit time of any delivered event, not the last
            // event's: clocks differ, and an event is read again as long
            // as its own time is at or after the watermark.
            *entry = (entry.0.max(event.sequence), entry.1.max(event.micros));
        }
    }

    /// Moves the watermark after a read at `now` (microseconds, the
    /// reader's clock) with window `window_micros`: to the earliest of
    /// `now - window`, `held_from` and `cut_at` (the last commit time read
    /// when the read stopped at a page limit), never backwards. Then drops
    /// from `recent` the aggregates whose delivered events are all more
    /// than a window before the new watermark (the audit band below it).
    pub(crate) fn advance(
        &mut self,
        now: u64,
        window_micros: u64,
        held_from: Option<u64>,
        cut_at: Option<u64>,
    ) {
        let mut target = now.saturating_sub(window_micros);
        for bound in [held_from, cut_at].into_iter().flatten() {
            target = target.min(bound);
        }
        if target > self.watermark {
            self.watermark = target;
        }
        // Kept for a window below the watermark: events read again there
        // (the band a read starts in) are known.
        let kept_from = self.watermark.saturating_sub(window_micros);
        self.recent.retain(|_, (_, micros)| *micros >= kept_from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(aggregate: &str, sequence: usize, micros: u64) -> Seen {
        Seen {
            aggregate_id: aggregate.to_string(),
            sequence,
            micros,
            deleted_through: None,
        }
    }

    fn delivered(events: &[Seen], plan: &Plan) -> Vec<(String, usize)> {
        plan.deliver
            .iter()
            .map(|&i| (events[i].aggregate_id.clone(), events[i].sequence))
            .collect()
    }

    #[test]
    fn runs_deliver_in_sequence_order_whatever_the_clocks() {
        // b's writer ran behind: its second event sorts first.
        let events = [
            seen("a", 1, 10),
            seen("b", 2, 11),
            seen("b", 1, 20),
            seen("a", 2, 30),
        ];
        let plan = SlicePosition::default().plan(&events, &HashMap::new(), &Gone::default());
        assert_eq!(
            delivered(&events, &plan),
            [
                ("a".into(), 1),
                ("a".into(), 2),
                ("b".into(), 1),
                ("b".into(), 2)
            ]
        );
        assert_eq!(plan.held_from, None);
    }

    #[test]
    fn a_gap_holds_the_rest_of_the_aggregate_and_the_watermark() {
        let mut position = SlicePosition::default();
        position.recent.insert("a".into(), (1, 5));
        let events = [seen("a", 3, 40), seen("a", 4, 50), seen("b", 1, 45)];
        let plan = position.plan(&events, &HashMap::new(), &Gone::default());
        assert_eq!(delivered(&events, &plan), [("b".into(), 1)]);
        assert_eq!(plan.held_from, Some(40));
        assert_eq!(plan.missing, [("a".to_string(), 2)]);
        position.record(&events, &plan.deliver);
        position.advance(1_000, 100, plan.held_from, None);
        assert_eq!(position.watermark, 40);
        // `a` stays in `recent` for a window below the watermark.
        assert_eq!(position.recent.get("a"), Some(&(1, 5)));
        // The missing event shows (committed after the watermark, by a
        // writer whose clock runs behind): everything flows.
        let events = [
            seen("a", 3, 40),
            seen("a", 2, 45),
            seen("b", 1, 45),
            seen("a", 4, 50),
        ];
        let plan = position.plan(&events, &HashMap::new(), &Gone::default());
        assert!(plan.unknown.is_empty());
        assert_eq!(
            delivered(&events, &plan),
            [("a".into(), 2), ("a".into(), 3), ("a".into(), 4)]
        );
        assert_eq!(plan.duplicates, 1);
    }

    #[test]
    fn a_late_event_below_the_watermark_is_delivered_in_order() {
        let mut position = SlicePosition::from_micros(10);
        position.watermark = 100;
        position.recent.insert("a".into(), (2, 95));
        // a#3 became visible after the watermark passed its time (read in
        // the band below it): it still follows a#2.
        let events = [seen("a", 2, 95), seen("a", 3, 97), seen("a", 4, 120)];
        let plan = position.plan(&events, &HashMap::new(), &Gone::default());
        assert_eq!(
            delivered(&events, &plan),
            [("a".into(), 3), ("a".into(), 4)]
        );
        assert_eq!(plan.duplicates, 1);
    }

    #[test]
    fn an_unknown_aggregate_needs_its_last_delivered_sequence() {
        let position = SlicePosition::from_micros(100);
        let events = [seen("a", 7, 150), seen("a", 8, 160)];
        let plan = position.plan(&events, &HashMap::new(), &Gone::default());
        assert_eq!(plan.unknown, [("a".to_string(), 7)]);
        assert!(plan.deliver.is_empty());
        // Delivered up to 6: 7 and 8 follow.
        let known = HashMap::from([("a".to_string(), 6)]);
        assert_eq!(
            delivered(&events, &position.plan(&events, &known, &Gone::default())),
            [("a".into(), 7), ("a".into(), 8)]
        );
        // Delivered up to 7: 7 is read again.
        let known = HashMap::from([("a".to_string(), 7)]);
        let plan = position.plan(&events, &known, &Gone::default());
        assert_eq!(
            (delivered(&events, &plan), plan.duplicates),
            (vec![("a".into(), 8)], 1)
        );
        // Delivered up to 5: 6 is missing, the rest held.
        let known = HashMap::from([("a".to_string(), 5)]);
        let plan = position.plan(&events, &known, &Gone::default());
        assert!(plan.deliver.is_empty());
        assert_eq!(
            (plan.held_from, plan.missing.clone()),
            (Some(150), vec![("a".to_string(), 6)])
        );
    }

    #[test]
    fn only_sequences_found_gone_with_their_aggregate_are_no_gap() {
        let mut position = SlicePosition::default();
        position.recent.insert("a".into(), (2, 5));
        let mut tombstone = seen("a", 5, 40);
        tombstone.deleted_through = Some(4);
        let events = [tombstone];
        // Not checked yet: a gap, held.
        let plan = position.plan(&events, &HashMap::new(), &Gone::default());
        assert!(plan.deliver.is_empty());
        assert_eq!(plan.missing, [("a".to_string(), 3)]);
        // 3 gone, 4 still to check: held at 4.
        let mut gone = Gone::default();
        gone.insert("a", 3, 3);
        let plan = position.plan(&events, &HashMap::new(), &gone);
        assert_eq!(plan.missing, [("a".to_string(), 4)]);
        // Both gone: the tombstone follows 2.
        gone.insert("a", 4, 4);
        let plan = position.plan(&events, &HashMap::new(), &gone);
        assert_eq!(delivered(&events, &plan), [("a".into(), 5)]);
    }

    #[test]
    fn the_watermark_trails_the_window_and_a_cut_and_never_moves_back() {
        let mut position = SlicePosition::from_micros(500);
        position.recent.insert("old".into(), (3, 400));
        position.recent.insert("new".into(), (1, 900));
        position.advance(1_000, 200, None, None);
        assert_eq!(position.watermark, 800);
        assert_eq!(position.recent.keys().collect::<Vec<_>>(), ["new"]);
        position.advance(1_100, 200, None, Some(850));
        assert_eq!(position.watermark, 850);
        position.advance(900, 200, None, None);
        assert_eq!(position.watermark, 850);
    }
}
