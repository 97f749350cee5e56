//! The positions of one subscription, topic by topic: the last `seq`
//! delivered in which epoch. Everything the library promises about order
//! rests here: what to ask for on resume (`since`), which events are
//! repeats to drop, which jumps are gaps to report. Plain data, no I/O, so
//! it is tested frame by frame.

use crate::delivery::{Delivery, Event};
use protocol::{Ack, EventFrame, Info, InfoKind, Since, SinceArg};
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub(crate) struct Cursors {
    /// Per topic: the last delivered seq (or the point the subscription
    /// started after) and its epoch.
    positions: BTreeMap<String, Since>,
}

impl Cursors {
    /// The `since` a renewed subscription asks for: the topic's position,
    /// or for a pattern every known topic's.
    pub(crate) fn since(&self, topic: &str, pattern: bool) -> Option<SinceArg> {
        if pattern {
            (!self.positions.is_empty()).then(|| SinceArg::PerTopic(self.positions.clone()))
        } else {
            self.positions.get(topic).cloned().map(SinceArg::Topic)
        }
    }

    /// The first subscribe's ack: each topic starts after the point its
    /// replay begins (`seq - replayed`), so replayed events are delivered.
    /// When the caller gave positions (`given`), each is answered like a
    /// resume: `Resumed` with the server's `recovered`, or `TopicDeleted`
    /// for a topic of a pattern that no longer exists.
    pub(crate) fn start(&mut self, ack: &Ack, given: Option<&SinceArg>) -> Vec<Delivery> {
        let mut recovered_of = BTreeMap::new();
        for (topic, now, replayed, recovered) in acked(ack) {
            recovered_of.insert(topic.clone(), recovered.unwrap_or(false));
            self.positions.insert(
                topic,
                Since {
                    seq: now.seq.saturating_sub(replayed),
                    epoch: now.epoch,
                },
            );
        }
        let given: BTreeMap<String, Since> = match given {
            None => BTreeMap::new(),
            Some(SinceArg::Topic(s)) => [(ack.topic.clone(), s.clone())].into(),
            Some(SinceArg::PerTopic(map)) => map.clone(),
        };
        given
            .into_iter()
            .map(|(topic, after)| match self.positions.get(&topic) {
                Some(now) => Delivery::Resumed {
                    recovered: recovered_of.get(&topic).copied().unwrap_or(false),
                    now: now.clone(),
                    topic,
                    after,
                },
                None => Delivery::TopicDeleted { topic },
            })
            .collect()
    }

    /// A renewed subscription's ack: one `Resumed` per topic, and
    /// `TopicDeleted` for a known topic of a pattern that no longer exists.
    pub(crate) fn resume(&mut self, ack: &Ack) -> Vec<Delivery> {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for (topic, now, replayed, recovered) in acked(ack) {
            seen.push(topic.clone());
            let start = Since {
                seq: now.seq.saturating_sub(replayed),
                epoch: now.epoch.clone(),
            };
            let (after, recovered) = match self.positions.get(&topic) {
                // Asked with `since`: the server says whether it replayed
                // everything after it.
                Some(before) => (before.clone(), recovered.unwrap_or(false)),
                // A topic a pattern matches that appeared while
                // disconnected: replayed from history (`last_n`), complete
                // when the history still held its first message.
                None => (
                    Since {
                        seq: 0,
                        epoch: now.epoch.clone(),
                    },
                    start.seq == 0,
                ),
            };
            self.positions.insert(topic.clone(), start.clone());
            out.push(Delivery::Resumed {
                topic,
                recovered,
                after,
                now: start,
            });
        }
        if ack.pattern == Some(true) {
            let gone: Vec<String> = self
                .positions
                .keys()
                .filter(|t| !seen.contains(t))
                .cloned()
                .collect();
            for topic in gone {
                self.positions.remove(&topic);
                out.push(Delivery::TopicDeleted { topic });
            }
        }
        out
    }

    /// When a renewed exact subscription found its topic created again
    /// (a new epoch) with messages already published: the position to
    /// subscribe again from, so that the new epoch's messages still in
    /// history are replayed (`since` seq 0 of the new epoch).
    pub(crate) fn new_epoch_replay(&self, ack: &Ack) -> Option<Since> {
        if ack.topics.is_some() {
            return None;
        }
        let before = self.positions.get(&ack.topic)?;
        let epoch = ack.epoch.clone()?;
        let start = ack.seq?.saturating_sub(ack.replayed.unwrap_or(0));
        (epoch != before.epoch && start > 0).then_some(Since { seq: 0, epoch })
    }

    /// An event: delivered unless it is a repeat; preceded by a `Gap` when
    /// seqs were skipped.
    pub(crate) fn event(&mut self, frame: EventFrame) -> Vec<Delivery> {
        let mut out = Vec::new();
        let position = self
            .positions
            .entry(frame.topic.clone())
            .or_insert_with(|| Since {
                seq: 0,
                epoch: String::new(),
            });
        if frame.seq <= position.seq {
            return out; // already delivered (a resume overlapped)
        }
        if frame.seq > position.seq + 1 {
            out.push(Delivery::Gap {
                topic: frame.topic.clone(),
                epoch: position.epoch.clone(),
                first: position.seq + 1,
                last: frame.seq - 1,
            });
        }
        position.seq = frame.seq;
        out.push(Delivery::Event(Event {
            epoch: position.epoch.clone(),
            topic: frame.topic,
            seq: frame.seq,
            id: frame.message.id,
            payload: frame.message.payload,
            ts: frame.ts,
        }));
        out
    }

    /// `topic_created` and `topic_deleted`.
    pub(crate) fn info(&mut self, info: &Info) -> Option<Delivery> {
        let topic = info.topic.clone()?;
        match info.msg {
            InfoKind::TopicCreated => {
                let epoch = info.epoch.clone().unwrap_or_default();
                self.positions.insert(
                    topic.clone(),
                    Since {
                        seq: 0,
                        epoch: epoch.clone(),
                    },
                );
                Some(Delivery::TopicCreated { topic, epoch })
            }
            InfoKind::TopicDeleted => {
                self.positions.remove(&topic);
                Some(Delivery::TopicDeleted { topic })
            }
            _ => None,
        }
    }
}

/// Each topic an ack speaks of: name, position now, replayed, recovered.
fn acked(ack: &Ack) -> Vec<(String, Since, u64, Option<bool>)> {
    match &ack.topics {
        Some(topics) => topics
            .iter()
            .map(|(name, t)| {
                let now = Since {
                    seq: t.seq,
                    epoch: t.epoch.clone(),
                };
                (name.clone(), now, t.replayed, t.recovered)
            })
            .collect(),
        None => {
            let now = Since {
                seq: ack.seq.unwrap_or(0),
                epoch: ack.epoch.clone().unwrap_or_default(),
            };
            vec![(
                ack.topic.clone(),
                now,
                ack.replayed.unwrap_or(0),
                ack.recovered,
            )]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{AckTopic, Message};

    fn ack(seq: u64, epoch: &str, replayed: u64, recovered: Option<bool>) -> Ack {
        Ack {
            request_id: None,
            topic: "t".into(),
            status: "ok".into(),
            seq: Some(seq),
            epoch: Some(epoch.into()),
            replayed: Some(replayed),
            recovered,
            id: None,
            duplicate: false,
            pattern: None,
            topics: None,
            ts: String::new(),
        }
    }

    fn event(topic: &str, seq: u64) -> EventFrame {
        EventFrame {
            topic: topic.into(),
            message: Message {
                id: format!("m{seq}"),
                payload: seq.into(),
            },
            seq,
            ts: String::new(),
        }
    }

    fn seqs(out: &[Delivery]) -> Vec<u64> {
        out.iter()
            .filter_map(|d| match d {
                Delivery::Event(e) => Some(e.seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn replayed_events_are_delivered_and_repeats_are_dropped() {
        let mut c = Cursors::default();
        c.start(&ack(5, "e1", 2, None), None);
        let mut got = Vec::new();
        for seq in [4, 5, 5, 3, 6] {
            got.extend(c.event(event("t", seq)));
        }
        assert_eq!(seqs(&got), [4, 5, 6]);
        assert!(got.iter().all(|d| matches!(d, Delivery::Event(_))));
        let Some(SinceArg::Topic(since)) = c.since("t", false) else {
            panic!("a since for the topic")
        };
        assert_eq!((since.seq, since.epoch.as_str()), (6, "e1"));
    }

    #[test]
    fn a_skip_is_reported_as_a_gap_before_the_event() {
        let mut c = Cursors::default();
        c.start(&ack(0, "e1", 0, None), None);
        c.event(event("t", 1));
        let out = c.event(event("t", 4));
        assert_eq!(
            out[0],
            Delivery::Gap {
                topic: "t".into(),
                epoch: "e1".into(),
                first: 2,
                last: 3
            }
        );
        assert_eq!(seqs(&out), [4]);
    }

    #[test]
    fn a_resume_reports_whether_it_recovered_and_what_is_missing() {
        let mut c = Cursors::default();
        c.start(&ack(3, "e1", 0, None), None);
        c.event(event("t", 4));
        let out = c.resume(&ack(9, "e1", 5, Some(true)));
        assert!(
            matches!(&out[..], [Delivery::Resumed { recovered: true, after, .. }] if after.seq == 4)
        );
        assert_eq!(out[0].missing(), None);

        // Not recovered in the same epoch: exactly the seqs in between.
        let out = c.resume(&ack(20, "e1", 0, Some(false)));
        assert_eq!(
            out[0].missing(),
            Some(crate::Missing::Range { first: 5, last: 20 })
        );
        // Events continue after the new position; older ones are repeats.
        assert_eq!(seqs(&c.event(event("t", 20))), Vec::<u64>::new());
        assert_eq!(seqs(&c.event(event("t", 21))), [21]);

        // A new epoch: everything of the new one so far is missing too.
        let out = c.resume(&ack(2, "e2", 0, Some(false)));
        assert_eq!(
            out[0].missing(),
            Some(crate::Missing::EpochChanged { new_epoch_seq: 2 })
        );
        assert_eq!(seqs(&c.event(event("t", 3))), [3]);
    }

    #[test]
    fn positions_given_at_the_start_are_answered_like_a_resume() {
        let mut c = Cursors::default();
        let given = SinceArg::Topic(Since {
            seq: 2,
            epoch: "e1".into(),
        });
        let out = c.start(&ack(9, "e1", 0, Some(false)), Some(&given));
        assert_eq!(
            out[0].missing(),
            Some(crate::Missing::Range { first: 3, last: 9 })
        );

        let mut c = Cursors::default();
        let given = SinceArg::PerTopic(
            [
                (
                    "o.a".to_owned(),
                    Since {
                        seq: 1,
                        epoch: "a1".into(),
                    },
                ),
                (
                    "o.gone".to_owned(),
                    Since {
                        seq: 1,
                        epoch: "g1".into(),
                    },
                ),
            ]
            .into(),
        );
        let out = c.start(
            &pattern_ack(&[("o.a", 3, "a1", 2, Some(true)), ("o.b", 1, "b1", 0, None)]),
            Some(&given),
        );
        assert!(
            matches!(&out[0], Delivery::Resumed { topic, recovered: true, .. } if topic == "o.a")
        );
        assert_eq!(
            out[1],
            Delivery::TopicDeleted {
                topic: "o.gone".into()
            }
        );
        assert_eq!(out.len(), 2, "o.b was not asked about: {out:?}");
    }

    #[test]
    fn a_new_epoch_with_messages_is_replayed_from_its_start() {
        let mut c = Cursors::default();
        c.start(&ack(3, "e1", 0, None), None);
        assert_eq!(c.new_epoch_replay(&ack(5, "e1", 0, Some(false))), None);
        assert_eq!(c.new_epoch_replay(&ack(0, "e2", 0, Some(false))), None);
        let again = c.new_epoch_replay(&ack(2, "e2", 0, Some(false)));
        assert_eq!(
            again,
            Some(Since {
                seq: 0,
                epoch: "e2".into()
            })
        );
        // Subscribed again from seq 0 of e2: both replayed, only the old
        // epoch's tail is missing.
        let out = c.resume(&ack(2, "e2", 2, Some(false)));
        assert_eq!(
            out[0].missing(),
            Some(crate::Missing::EpochChanged { new_epoch_seq: 0 })
        );
        assert_eq!(seqs(&c.event(event("t", 1))), [1]);
    }

    fn pattern_ack(topics: &[(&str, u64, &str, u64, Option<bool>)]) -> Ack {
        let mut a = ack(0, "", 0, None);
        a.topic = "o.*".into();
        a.seq = None;
        a.epoch = None;
        a.replayed = None;
        a.pattern = Some(true);
        a.topics = Some(
            topics
                .iter()
                .map(|(name, seq, epoch, replayed, recovered)| {
                    let t = AckTopic {
                        seq: *seq,
                        epoch: (*epoch).into(),
                        replayed: *replayed,
                        recovered: *recovered,
                    };
                    ((*name).to_owned(), t)
                })
                .collect(),
        );
        a
    }

    #[test]
    fn a_pattern_resumes_each_topic_and_says_which_appeared_or_went() {
        let mut c = Cursors::default();
        let first = pattern_ack(&[("o.a", 2, "a1", 0, None), ("o.b", 1, "b1", 0, None)]);
        c.start(&first, None);
        c.event(event("o.a", 3));
        let Some(SinceArg::PerTopic(map)) = c.since("o.*", true) else {
            panic!("a per-topic since")
        };
        assert_eq!((map["o.a"].seq, map["o.b"].seq), (3, 1));

        // o.b deleted, o.c created while away (fully replayed), o.d created
        // with more than the history held.
        let out = c.resume(&pattern_ack(&[
            ("o.a", 5, "a1", 2, Some(true)),
            ("o.c", 2, "c1", 2, None),
            ("o.d", 150, "d1", 100, None),
        ]));
        let recovered: Vec<(String, bool)> = out
            .iter()
            .filter_map(|d| match d {
                Delivery::Resumed {
                    topic, recovered, ..
                } => Some((topic.clone(), *recovered)),
                _ => None,
            })
            .collect();
        assert_eq!(
            recovered,
            [
                ("o.a".to_owned(), true),
                ("o.c".to_owned(), true),
                ("o.d".to_owned(), false)
            ]
        );
        assert!(out.contains(&Delivery::TopicDeleted {
            topic: "o.b".into()
        }));
        assert_eq!(seqs(&c.event(event("o.c", 1))), [1]);
        assert_eq!(seqs(&c.event(event("o.d", 51))), [51]);
    }
}
