//! Alarm episodes (PRODUCT.md): consecutive peak intervals of one device form one episode. It
//! starts with the first peak, grows (count, highest power) with each further one, and ends with
//! the first interval at or under the maximum (a meter reset counts as such). The owner is told
//! when it starts, grows and ends, not once per interval.
//!
//! Episodes follow the head of a device's series. A late reading that lands inside the open
//! episode's span and makes a peak grows it; a late reading elsewhere changes no episode (its
//! alert still stands on its own, as alerts already raised do).

use uuid::Uuid;

/// An episode's state.
#[derive(Clone, Debug, PartialEq)]
pub struct Episode {
    pub id: Uuid,
    /// Start of the first peak interval.
    pub started_t: i64,
    /// End of the latest peak interval.
    pub last_t: i64,
    pub peaks: i32,
    pub max_power_kw: f64,
    /// The device's maximum when it started.
    pub limit_kw: f64,
    /// End of the interval that ended it.
    pub ended_t: Option<i64>,
}

/// One interval between consecutive readings that a batch created (it touches a new reading).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    pub t1: i64,
    pub t2: i64,
    /// The power, when the interval is a peak.
    pub peak: Option<f64>,
}

/// How a batch changed an episode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Started in this batch (and perhaps ended too: see `ended_t`).
    Started,
    /// Existed before and grew or ended.
    Changed,
}

/// What a batch did to one device's episodes.
#[derive(Debug, Default, PartialEq)]
pub struct Tracked {
    /// Each episode the batch started, grew or ended, once, in its final state.
    pub episodes: Vec<(Episode, Change)>,
    /// The episode of each step (aligned with the steps): set for the peaks that belong to one.
    pub step_episode: Vec<Option<Uuid>>,
}

/// Applies a device's new `steps` (in time order) to its `open` episode. `head_before` is the
/// time of the device's newest reading before the batch; steps ending after it are at the head
/// of the series.
pub fn track(
    open: Option<Episode>,
    head_before: Option<i64>,
    steps: &[Step],
    limit_kw: f64,
    mut new_id: impl FnMut() -> Uuid,
) -> Tracked {
    let mut current = open.map(|e| (e, Change::Changed, false));
    let mut tracked = Tracked {
        episodes: Vec::new(),
        step_episode: vec![None; steps.len()],
    };
    for (i, step) in steps.iter().enumerate() {
        let at_head = head_before.is_none_or(|h| step.t2 > h);
        match (step.peak, current.as_mut()) {
            (Some(power), Some((episode, _, touched)))
                if at_head || step.t1 >= episode.started_t =>
            {
                episode.peaks += 1;
                episode.max_power_kw = episode.max_power_kw.max(power);
                if at_head {
                    episode.last_t = step.t2;
                }
                *touched = true;
                tracked.step_episode[i] = Some(episode.id);
            }
            (Some(power), None) if at_head => {
                let id = new_id();
                current = Some((
                    Episode {
                        id,
                        started_t: step.t1,
                        last_t: step.t2,
                        peaks: 1,
                        max_power_kw: power,
                        limit_kw,
                        ended_t: None,
                    },
                    Change::Started,
                    true,
                ));
                tracked.step_episode[i] = Some(id);
            }
            (None, Some(_)) if at_head => {
                if let Some((mut episode, change, _)) = current.take() {
                    episode.ended_t = Some(step.t2);
                    tracked.episodes.push((episode, change));
                }
            }
            _ => {}
        }
    }
    if let Some((episode, change, true)) = current {
        tracked.episodes.push((episode, change));
    }
    tracked
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn steps(spec: &[(i64, i64, Option<f64>)]) -> Vec<Step> {
        spec.iter()
            .map(|&(a, b, peak)| Step {
                t1: a * 10 * MIN,
                t2: b * 10 * MIN,
                peak,
            })
            .collect()
    }

    fn ids() -> impl FnMut() -> Uuid {
        let mut n = 0;
        move || {
            n += 1;
            Uuid::from_u128(n)
        }
    }

    fn episode(
        id: u128,
        start: i64,
        last: i64,
        peaks: i32,
        max: f64,
        ended: Option<i64>,
    ) -> Episode {
        Episode {
            id: Uuid::from_u128(id),
            started_t: start * 10 * MIN,
            last_t: last * 10 * MIN,
            peaks,
            max_power_kw: max,
            limit_kw: 5.0,
            ended_t: ended.map(|e| e * 10 * MIN),
        }
    }

    #[test]
    fn a_run_of_peaks_is_one_episode_that_ends_at_the_first_normal_interval() {
        let s = steps(&[
            (0, 1, None),
            (1, 2, Some(7.0)),
            (2, 3, Some(9.0)),
            (3, 4, Some(8.0)),
            (4, 5, None),
            (5, 6, None),
        ]);
        let t = track(None, None, &s, 5.0, ids());
        assert_eq!(
            t.episodes,
            [(episode(1, 1, 4, 3, 9.0, Some(5)), Change::Started)]
        );
        let one = Some(Uuid::from_u128(1));
        assert_eq!(t.step_episode, [None, one, one, one, None, None]);
    }

    #[test]
    fn an_episode_carries_over_from_batch_to_batch() {
        // The first batch ends in the middle of an episode.
        let first = track(
            None,
            None,
            &steps(&[(0, 1, None), (1, 2, Some(7.0))]),
            5.0,
            ids(),
        );
        let open = first.episodes[0].0.clone();
        assert_eq!(open.ended_t, None);
        // The next batch continues at the head: it grows, then ends.
        let next = track(
            Some(open),
            Some(2 * 10 * MIN),
            &steps(&[(2, 3, Some(11.0)), (3, 4, None)]),
            5.0,
            ids(),
        );
        assert_eq!(
            next.episodes,
            [(episode(1, 1, 3, 2, 11.0, Some(4)), Change::Changed)]
        );
        // A batch that only continues normal operation touches nothing.
        let quiet = track(
            None,
            Some(4 * 10 * MIN),
            &steps(&[(4, 5, None)]),
            5.0,
            ids(),
        );
        assert_eq!(
            quiet,
            Tracked {
                episodes: vec![],
                step_episode: vec![None]
            }
        );
    }

    #[test]
    fn two_episodes_in_one_batch_are_two() {
        let s = steps(&[(0, 1, Some(6.0)), (1, 2, None), (2, 3, Some(8.0))]);
        let t = track(None, None, &s, 5.0, ids());
        assert_eq!(
            t.episodes,
            [
                (episode(1, 0, 1, 1, 6.0, Some(2)), Change::Started),
                (episode(2, 2, 3, 1, 8.0, None), Change::Started),
            ]
        );
    }

    #[test]
    fn a_reset_ends_an_episode() {
        // A reset is no consumption: not a peak, so the episode ends there.
        let open = episode(7, 0, 1, 1, 6.0, None);
        let t = track(
            Some(open),
            Some(10 * MIN),
            &steps(&[(1, 2, None)]),
            5.0,
            ids(),
        );
        assert_eq!(
            t.episodes,
            [(episode(7, 0, 1, 1, 6.0, Some(2)), Change::Changed)]
        );
    }

    #[test]
    fn a_late_peak_inside_the_open_episode_grows_it_and_other_late_ones_do_not() {
        let open = episode(7, 3, 6, 2, 9.0, None);
        // A late reading at 4.5 splits (4, 5): both halves are peaks, one higher than before.
        let s = vec![
            Step {
                t1: 10 * MIN,
                t2: 2 * 10 * MIN,
                peak: Some(20.0),
            },
            Step {
                t1: 4 * 10 * MIN,
                t2: 45 * MIN,
                peak: Some(12.0),
            },
            Step {
                t1: 45 * MIN,
                t2: 5 * 10 * MIN,
                peak: Some(6.0),
            },
        ];
        let t = track(Some(open), Some(6 * 10 * MIN), &s, 5.0, ids());
        assert_eq!(
            t.episodes,
            [(episode(7, 3, 6, 4, 12.0, None), Change::Changed)]
        );
        let seven = Some(Uuid::from_u128(7));
        // The late peak before the episode belongs to none.
        assert_eq!(t.step_episode, [None, seven, seven]);
        // A late normal interval inside the episode does not end it.
        let open = episode(7, 3, 6, 2, 9.0, None);
        let s = vec![Step {
            t1: 4 * 10 * MIN,
            t2: 45 * MIN,
            peak: None,
        }];
        let t = track(Some(open), Some(6 * 10 * MIN), &s, 5.0, ids());
        assert_eq!(t.episodes, []);
    }

    #[test]
    fn a_late_peak_with_no_open_episode_starts_none() {
        let s = steps(&[(1, 2, Some(9.0))]);
        let t = track(None, Some(5 * 10 * MIN), &s, 5.0, ids());
        assert_eq!(
            t,
            Tracked {
                episodes: vec![],
                step_episode: vec![None]
            }
        );
    }
}
