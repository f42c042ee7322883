//! Turning measured figures into one score per candidate and choosing the winner.
//!
//! * Each max-rate scenario gives a ratio: the candidate's msg/s over the best msg/s any candidate
//!   reached in it. The score is the geometric mean of those ratios (1.0 = best everywhere), so a
//!   candidate cannot buy a bad scenario with a very good one, and no scenario's scale dominates.
//! * A candidate is rejected (no score) when any run failed, when it lost QoS 1 messages, or when its
//!   p99 at the fixed rate is more than [`P99_FACTOR`] times the best candidate's p99 (and more than
//!   [`P99_SLACK_US`] above it: below that the difference is timer and scheduler noise).
//! * The winner is the accepted candidate with the best score, except that among candidates within
//!   [`NOISE`] of that score the one with fewer shards, then the unpinned one (the broker's default),
//!   wins: differences that small do not repeat from run to run, and fewer shards leave CPUs to the
//!   rest of the machine.

use serde::Serialize;

/// A fixed-rate p99 above this many times the best rejects the candidate.
pub const P99_FACTOR: f64 = 1.5;
/// ... unless it is within this many microseconds of the best.
pub const P99_SLACK_US: f64 = 50.0;
/// Scores within this fraction of the best are a tie.
pub const NOISE: f64 = 0.02;

/// What scoring needs to know about one candidate's runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// `shards N`.
    pub shards: usize,
    /// Whether the shards are pinned.
    pub pinned: bool,
    /// msg/s of each max-rate scenario, in the scenario set's order; `None` where the run failed.
    pub throughput: Vec<Option<f64>>,
    /// p99 of the fixed-rate run; `None` if it failed or measured nothing.
    pub p99_us: Option<f64>,
    /// QoS 1 messages lost over all runs.
    pub lost_qos1: u64,
    /// The first failure (broker did not start, a run failed), if any.
    pub failure: Option<String>,
}

/// The score of one candidate, or why it has none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Geometric mean of throughput ratios; also set for rejected candidates that have all figures,
    /// to show how close they came.
    pub score: Option<f64>,
    /// Why the candidate cannot win; `None` = accepted.
    pub rejected: Option<String>,
}

/// Scores every candidate against the others.
pub fn score(all: &[Figures]) -> Vec<Verdict> {
    let scenarios = all.iter().map(|f| f.throughput.len()).max().unwrap_or(0);
    let best: Vec<f64> = (0..scenarios)
        .map(|i| {
            all.iter()
                .filter_map(|f| f.throughput.get(i).copied().flatten())
                .fold(0.0, f64::max)
        })
        .collect();
    let best_p99 = all
        .iter()
        .filter(|f| f.failure.is_none())
        .filter_map(|f| f.p99_us)
        .fold(f64::INFINITY, f64::min);
    all.iter()
        .map(|f| {
            let ratios: Option<Vec<f64>> = (0..scenarios)
                .map(|i| {
                    let t = f.throughput.get(i).copied().flatten()?;
                    Some(if best[i] > 0.0 { t / best[i] } else { 0.0 })
                })
                .collect();
            let score = ratios.map(|r| geometric_mean(&r));
            let limit = (best_p99 * P99_FACTOR).max(best_p99 + P99_SLACK_US);
            let rejected = if let Some(why) = &f.failure {
                Some(why.clone())
            } else if f.lost_qos1 > 0 {
                Some(format!("lost {} QoS 1 messages", f.lost_qos1))
            } else if score.is_none() {
                Some("a max-rate run has no result".into())
            } else {
                match f.p99_us {
                    None => Some("no latency measured at the fixed rate".into()),
                    Some(p) if p > limit => Some(format!(
                        "fixed-rate p99 {p:.0} µs > {P99_FACTOR}× best {best_p99:.0} µs"
                    )),
                    Some(_) => None,
                }
            };
            Verdict { score, rejected }
        })
        .collect()
}

/// The n-th root of the product; 0 if any ratio is 0, 1 for no ratios.
pub fn geometric_mean(ratios: &[f64]) -> f64 {
    if ratios.is_empty() {
        return 1.0;
    }
    if ratios.iter().any(|&r| r <= 0.0) {
        return 0.0;
    }
    (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp()
}

/// Index of the winner among accepted candidates (see the module comment), `None` if all are rejected.
pub fn winner(all: &[Figures], verdicts: &[Verdict]) -> Option<usize> {
    let accepted: Vec<(usize, f64)> = verdicts
        .iter()
        .enumerate()
        .filter(|(_, v)| v.rejected.is_none())
        .filter_map(|(i, v)| Some((i, v.score?)))
        .collect();
    let top = accepted.iter().map(|&(_, s)| s).fold(f64::MIN, f64::max);
    accepted
        .into_iter()
        .filter(|&(_, s)| s >= top * (1.0 - NOISE))
        .min_by(|&(a, sa), &(b, sb)| {
            let (fa, fb) = (&all[a], &all[b]);
            fa.shards
                .cmp(&fb.shards)
                .then(fa.pinned.cmp(&fb.pinned))
                .then(sb.total_cmp(&sa))
                .then(a.cmp(&b))
        })
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(shards: usize, pinned: bool, t: [f64; 2], p99: f64) -> Figures {
        Figures {
            shards,
            pinned,
            throughput: t.iter().map(|&x| Some(x)).collect(),
            p99_us: Some(p99),
            lost_qos1: 0,
            failure: None,
        }
    }

    #[test]
    fn geometric_means() {
        assert_eq!(geometric_mean(&[]), 1.0);
        assert!((geometric_mean(&[1.0, 0.25]) - 0.5).abs() < 1e-12);
        assert_eq!(geometric_mean(&[1.0, 0.0]), 0.0);
    }

    #[test]
    fn scores_are_ratios_to_the_best_per_scenario() {
        let all = [
            fig(1, false, [100.0, 400.0], 100.0),
            fig(2, false, [200.0, 100.0], 100.0),
        ];
        let v = score(&all);
        // 1 shard: sqrt(0.5 × 1.0); 2 shards: sqrt(1.0 × 0.25).
        assert!((v[0].score.unwrap() - 0.5f64.sqrt()).abs() < 1e-12);
        assert!((v[1].score.unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(winner(&all, &v), Some(0));
    }

    #[test]
    fn slow_p99_loss_and_failures_reject() {
        let mut all = vec![
            fig(1, false, [100.0, 100.0], 200.0),
            fig(2, false, [300.0, 300.0], 301.0), // 1.505× the best p99 and 101 µs above it
            fig(2, true, [300.0, 300.0], 290.0),
            fig(4, true, [400.0, 400.0], 200.0),
            fig(4, false, [500.0, 500.0], 200.0),
        ];
        all[3].lost_qos1 = 2;
        all[4].failure = Some("broker exited".into());
        let v = score(&all);
        assert_eq!(v[0].rejected, None);
        assert!(
            v[1].rejected.as_deref().unwrap().contains("p99 301"),
            "{:?}",
            v[1]
        );
        assert_eq!(v[2].rejected, None);
        assert_eq!(v[3].rejected.as_deref(), Some("lost 2 QoS 1 messages"));
        assert_eq!(v[4].rejected.as_deref(), Some("broker exited"));
        // The failed candidate still sets the best throughput: ratios are to the best measured.
        assert!((v[2].score.unwrap() - 0.6).abs() < 1e-12);
        assert_eq!(winner(&all, &v), Some(2));
    }

    #[test]
    fn small_p99_differences_are_noise() {
        // 60 µs vs 30 µs is 2×, but only 30 µs apart.
        let all = [
            fig(1, false, [100.0, 100.0], 30.0),
            fig(2, false, [100.0, 100.0], 60.0),
        ];
        assert!(score(&all).iter().all(|v| v.rejected.is_none()));
    }

    #[test]
    fn ties_go_to_fewer_shards_then_unpinned() {
        let all = [
            fig(2, true, [100.0, 100.0], 100.0),
            fig(2, false, [99.0, 99.0], 100.0),
            fig(1, true, [97.0, 97.0], 100.0), // 3% below: not a tie
        ];
        let v = score(&all);
        assert_eq!(winner(&all, &v), Some(1), "unpinned within 2% beats pinned");
        let all = [
            fig(2, false, [100.0, 100.0], 100.0),
            fig(1, true, [99.0, 99.0], 100.0),
        ];
        assert_eq!(
            winner(&all, &score(&all)),
            Some(1),
            "fewer shards within 2% wins"
        );
    }

    #[test]
    fn no_winner_when_everything_is_rejected() {
        let mut all = vec![fig(1, false, [100.0, 100.0], 100.0)];
        all[0].failure = Some("x".into());
        assert_eq!(winner(&all, &score(&all)), None);
        assert_eq!(winner(&[], &[]), None);
    }
}
