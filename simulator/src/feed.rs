//! Many meters at once: each device has a source (a CSV file or a synthetic profile), and the
//! feed yields their messages merged in timestamp order, as the meters would send them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use uuid::Uuid;

use crate::csv_source::Row;
use crate::message::MeterMessage;
use crate::profile::Generator;

/// Where a device's readings come from.
pub enum Source {
    Csv(Vec<Row>),
    Profile(Box<Generator>),
}

/// The simulated clock: the first reading's time and the step between readings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    pub start_ms: i64,
    pub step_ms: i64,
}

/// When the feed ends: after a number of readings per device, at a simulated time, or never
/// (a CSV source ends with its file either way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limit {
    pub count_per_device: Option<u64>,
    pub end_ms: Option<i64>,
}

struct DeviceFeed {
    device: Uuid,
    source: Source,
    index: u64,
    last_ms: Option<i64>,
}

impl DeviceFeed {
    fn next(&mut self, clock: Clock, limit: Limit) -> Option<MeterMessage> {
        if limit.count_per_device.is_some_and(|n| self.index >= n) {
            return None;
        }
        let clocked = clock.start_ms + self.index as i64 * clock.step_ms;
        let (timestamp, value) = match &mut self.source {
            Source::Csv(rows) => {
                let row = rows.get(self.index as usize)?;
                (row.timestamp_ms.unwrap_or(clocked), row.value_kwh)
            }
            Source::Profile(generator) => {
                let from = self.last_ms.unwrap_or(clocked);
                (clocked, generator.advance(from, clocked))
            }
        };
        if limit.end_ms.is_some_and(|end| timestamp >= end) {
            return None;
        }
        self.index += 1;
        self.last_ms = Some(timestamp);
        Some(MeterMessage {
            timestamp,
            sensor_id: self.device,
            measurement_value: value,
        })
    }
}

/// The merged stream of every device's messages, earliest first.
pub struct Feed {
    devices: Vec<DeviceFeed>,
    buffered: Vec<Option<MeterMessage>>,
    heap: BinaryHeap<Reverse<(i64, usize)>>,
    clock: Clock,
    limit: Limit,
}

impl Feed {
    pub fn new(sources: Vec<(Uuid, Source)>, clock: Clock, limit: Limit) -> Self {
        let mut feed = Feed {
            devices: sources
                .into_iter()
                .map(|(device, source)| DeviceFeed {
                    device,
                    source,
                    index: 0,
                    last_ms: None,
                })
                .collect(),
            buffered: Vec::new(),
            heap: BinaryHeap::new(),
            clock,
            limit,
        };
        feed.buffered = (0..feed.devices.len()).map(|_| None).collect();
        for i in 0..feed.devices.len() {
            feed.refill(i);
        }
        feed
    }

    fn refill(&mut self, i: usize) {
        if let Some(message) = self.devices[i].next(self.clock, self.limit) {
            self.heap.push(Reverse((message.timestamp, i)));
            self.buffered[i] = Some(message);
        }
    }

    /// Messages left, when it can be known without generating them.
    pub fn len_hint(&self) -> Option<u64> {
        let per_device = self.limit.count_per_device;
        let mut total = 0;
        for d in &self.devices {
            let n = match (&d.source, per_device) {
                (Source::Csv(rows), Some(n)) => n.min(rows.len() as u64),
                (Source::Csv(rows), None) => rows.len() as u64,
                (Source::Profile(_), Some(n)) => n,
                (Source::Profile(_), None) => match self.limit.end_ms {
                    Some(end) if self.clock.step_ms > 0 => ((end - self.clock.start_ms).max(0)
                        as u64)
                        .div_ceil(self.clock.step_ms as u64),
                    _ => return None,
                },
            };
            total += n;
        }
        Some(total)
    }
}

impl Iterator for Feed {
    type Item = MeterMessage;

    fn next(&mut self) -> Option<MeterMessage> {
        let Reverse((_, i)) = self.heap.pop()?;
        let message = self.buffered[i].take();
        self.refill(i);
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    #[test]
    fn devices_are_merged_in_time_order_and_limited() {
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        let clock = Clock {
            start_ms: 1_000_000,
            step_ms: 600_000,
        };
        let csv = vec![
            Row {
                timestamp_ms: None,
                value_kwh: 1.0,
            },
            Row {
                timestamp_ms: None,
                value_kwh: 2.0,
            },
        ];
        let feed = Feed::new(
            vec![
                (a, Source::Csv(csv)),
                (
                    b,
                    Source::Profile(Box::new(Generator::new(Profile::Office, 1.0, 1, 5.0))),
                ),
            ],
            clock,
            Limit {
                count_per_device: Some(3),
                end_ms: None,
            },
        );
        assert_eq!(feed.len_hint(), Some(5));
        let all: Vec<_> = feed.collect();
        assert_eq!(all.len(), 5);
        assert!(all.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        assert_eq!(all.iter().filter(|m| m.sensor_id == a).count(), 2);
        let first_b = all.iter().find(|m| m.sensor_id == b).unwrap();
        assert_eq!(first_b.measurement_value, 5.0);
        assert_eq!(first_b.timestamp, 1_000_000);
    }

    #[test]
    fn an_end_time_stops_every_device() {
        let clock = Clock {
            start_ms: 0,
            step_ms: 10,
        };
        let feed = Feed::new(
            vec![(
                Uuid::new_v4(),
                Source::Profile(Box::new(Generator::new(Profile::Factory, 1.0, 1, 0.0))),
            )],
            clock,
            Limit {
                count_per_device: None,
                end_ms: Some(95),
            },
        );
        assert_eq!(feed.len_hint(), Some(10));
        assert_eq!(feed.count(), 10);
    }
}
