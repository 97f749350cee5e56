//! What every soak client adds to: per topic, what was published, acked and
//! received and which stretch of `seq`s each subscription surely covered;
//! the checks' counters; and every error by kind. One ledger per phase
//! (the soak, then the shutdown), shared by the clients of that phase.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// Server counters of a topic at the start of a phase, so the phase's own
/// share can be told apart.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Base {
    pub seq: u64,
    pub delivered: u64,
    pub dropped: u64,
}

pub struct TopicLedger {
    pub name: String,
    pub epoch: String,
    pub base: Base,
    /// Publish requests written.
    pub sent: u64,
    /// Publish acks received, and the highest `seq` among them.
    pub acked: u64,
    pub acked_seq: u64,
    /// Live events received (replays excluded, as on the server).
    pub live: u64,
    /// Σ over ended subscriptions of the live events each surely had a
    /// place for: the ones published (acked) between its subscribe and the
    /// moment the client let go.
    pub lower: u64,
    /// Ended subscriptions as (`seq` at subscribe, seconds when the client
    /// let go), for the upper bound.
    pub ended: Vec<(u64, f64)>,
    /// (seconds, highest `seq` that may have been published by then:
    /// base + sent), sampled every 100 ms.
    pub timeline: Vec<(f64, u64)>,
}

impl TopicLedger {
    pub fn new(name: String, epoch: String, base: Base) -> Self {
        TopicLedger {
            name,
            epoch,
            base,
            sent: 0,
            acked: 0,
            acked_seq: base.seq,
            live: 0,
            lower: 0,
            ended: Vec::new(),
            timeline: Vec::new(),
        }
    }

    /// The highest `seq` possibly published `at` seconds (the first
    /// sample at or after it; the last one if none).
    pub fn sent_seq_by(&self, at: f64) -> u64 {
        let i = self.timeline.partition_point(|(t, _)| *t < at);
        self.timeline
            .get(i)
            .map(|(_, s)| *s)
            .unwrap_or(self.base.seq + self.sent)
    }

    /// Σ over ended subscriptions of the events that may have been
    /// published to them: up to `grace` seconds after the client let go
    /// (the time the server may take to notice).
    pub fn upper(&self, grace: f64) -> u64 {
        self.ended
            .iter()
            .map(|(start, at)| self.sent_seq_by(at + grace).saturating_sub(*start))
            .sum()
    }
}

/// Errors by kind: anything here is a finding.
#[derive(Debug, Default, Serialize)]
pub struct Errors {
    /// `error` frames other than `SLOW_CONSUMER`, by code.
    pub error_frames: BTreeMap<String, u64>,
    /// Closes the client did not cause: `close 1001`, `eof`, `io`, …
    pub unexpected_closes: BTreeMap<String, u64>,
    /// REST and upgrade failures, by kind (`http 503`, `io`, …).
    pub http: BTreeMap<String, u64>,
    /// Frames that do not parse or lack a field the contract promises.
    pub malformed: u64,
    /// Well-formed frames that should not have come (a stray `info`,
    /// an ack without `recovered` after a `since`, …), by kind.
    pub unexpected_frames: BTreeMap<String, u64>,
    /// The first few of all the above, verbatim.
    pub samples: Vec<String>,
}

impl Errors {
    pub fn sample(&mut self, what: String) {
        if self.samples.len() < 20 {
            self.samples.push(what);
        }
    }

    pub fn error_frame(&mut self, code: &str, message: &str) {
        *self.error_frames.entry(code.to_owned()).or_default() += 1;
        self.sample(format!("error {code}: {message}"));
    }

    pub fn unexpected_close(&mut self, kind: String, detail: &str) {
        self.sample(format!("unexpected close: {kind} {detail}"));
        *self.unexpected_closes.entry(kind).or_default() += 1;
    }

    pub fn http(&mut self, kind: String, detail: String) {
        self.sample(format!("{kind}: {detail}"));
        *self.http.entry(kind).or_default() += 1;
    }

    pub fn malformed(&mut self, why: String) {
        self.malformed += 1;
        self.sample(format!("malformed: {why}"));
    }

    pub fn unexpected_frame(&mut self, kind: &str, text: String) {
        *self.unexpected_frames.entry(kind.to_owned()).or_default() += 1;
        self.sample(format!("unexpected {kind}: {text}"));
    }

    pub fn total(&self) -> u64 {
        self.error_frames.values().sum::<u64>()
            + self.unexpected_closes.values().sum::<u64>()
            + self.http.values().sum::<u64>()
            + self.malformed
            + self.unexpected_frames.values().sum::<u64>()
    }
}

/// The counters of the checks.
#[derive(Debug, Default, Serialize)]
pub struct Checks {
    pub subscribes: u64,
    /// Connections a subscriber opened again after letting one go.
    pub reconnects: u64,
    /// How the subscribers let go, by kind.
    pub chaos: BTreeMap<&'static str, u64>,
    pub since_subscribes: u64,
    /// `recovered: true` answers to a `since`.
    pub recovered: u64,
    pub not_recovered: u64,
    /// `recovered: false` although the epoch matched and history (of
    /// `history_size`) still held every message after `since`: must be 0.
    pub not_recovered_but_held: u64,
    /// Messages a subscriber missed for good (not recovered).
    pub unrecovered_events: u64,
    /// Recovered replays checked complete: first `seq` = since.seq + 1,
    /// contiguous up to the ack's `seq`, as many as the ack's `replayed`.
    pub replays_checked: u64,
    /// Recovered replays that were not: must be 0.
    pub replays_bad: u64,
    pub replayed_events: u64,
    pub live_events: u64,
    /// A `seq` jump with no `SLOW_CONSUMER` notice before it: must be 0.
    pub gaps_without_notice: u64,
    pub gaps_with_notice: u64,
    /// A notice whose count is not the size of the gap after it.
    pub notice_gap_mismatch: u64,
    /// A `seq` not above the previous one: must be 0.
    pub out_of_order: u64,
    pub slow_consumer_notices: u64,
    pub slow_consumer_dropped: u64,
    /// A subscribe ack with another epoch than the topic's: must be 0.
    pub epoch_changes: u64,
    /// Stalled clients (no reads, no pongs) held for four heartbeats or
    /// more, and how many of them the server had closed meanwhile.
    pub long_stalls: u64,
    pub long_stalls_closed_by_server: u64,
    /// How the server ended those: `close 1001`, `eof without close frame`, …
    pub stall_ends: BTreeMap<String, u64>,
    /// Half-closed clients (FIN sent, still reading) the server closed
    /// within two seconds.
    pub half_closes: u64,
    pub half_closes_answered: u64,
    /// Connections that read slowly for the first half of their life.
    pub slow_readers: u64,
    /// Subscriptions that ended before their ack arrived: their share of
    /// the bounds is unknown.
    pub unacked_subscriptions: u64,
}

pub struct Ledger {
    pub start: Instant,
    pub topics: Vec<TopicLedger>,
    pub errors: Errors,
    pub checks: Checks,
}

impl Ledger {
    pub fn new(topics: Vec<TopicLedger>) -> Self {
        Ledger {
            start: Instant::now(),
            topics,
            errors: Errors::default(),
            checks: Checks::default(),
        }
    }

    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Records a sample of every topic's timeline.
    pub fn sample_timeline(&mut self) {
        let now = self.now();
        for t in &mut self.topics {
            let s = t.base.seq + t.sent;
            t.timeline.push((now, s));
        }
    }

    /// A subscription to `topic` that started at `start` (its ack's `seq`)
    /// ended now; it surely covered every `seq` up to `surely`.
    pub fn end_subscription(&mut self, topic: usize, start: u64, surely: u64) {
        let now = self.now();
        let t = &mut self.topics[topic];
        t.lower += surely.saturating_sub(start);
        t.ended.push((start, now));
    }

    /// The topic index of one of this ledger's names.
    pub fn topic_index(&self, name: &str) -> Option<usize> {
        self.topics.iter().position(|t| t.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_from_the_timeline() {
        let mut t = TopicLedger::new("t".into(), "e".into(), Base::default());
        t.timeline = vec![(0.0, 0), (1.0, 100), (2.0, 200)];
        t.sent = 250;
        assert_eq!(t.sent_seq_by(0.5), 100);
        assert_eq!(t.sent_seq_by(1.0), 100);
        assert_eq!(t.sent_seq_by(5.0), 250);
        t.ended = vec![(10, 0.2), (150, 1.5)];
        // 0.2 + 1 → sample at 2.0 (200): 190; 1.5 + 1 → none: 250 − 150.
        assert_eq!(t.upper(1.0), 190 + 100);
    }
}
