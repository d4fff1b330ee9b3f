//! What every `make bench` binary shares. An absolute figure differs 2x between machines
//! (the same commit gave 54 and 103 MB/s on two), so a regression and a slower machine
//! look alike. Each bench therefore times every run of its work next to a fixed
//! calibration slice in the same process, reports every figure also per calibration (a
//! number that stays put when the machine changes), and compares that with the
//! committed baseline (`bench/baseline.json`): a figure worse than the baseline by more
//! than its tolerance fails the bench, naming the figure.
//!
//! `PULSELAKE_BENCH_RECORD=1 make bench` writes this run's figures as the new baseline
//! (after a change that is meant to move them; the commit says why).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The process's peak resident memory (`VmHWM`), MB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:").map(str::to_owned))
        })
        .and_then(|l| {
            l.split_whitespace()
                .next()
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The calibration slice: what the hot paths are made of, fixed forever (changing it
/// invalidates every baseline): JSON parsing and serialization, SHA-256, scattered
/// hash-map inserts and a sort. About 10 ms on a 2026 server core.
fn calibration_work() {
    let doc: Vec<Value> = (0..1_000)
        .map(|i| json!({"sensor_id": format!("s-{i}"), "metric": "heart_rate", "value": 60.0 + (i % 40) as f64,
                        "unit": "/min", "measured_at": "2026-12-03T10:00:00.000Z"}))
        .collect();
    let text = serde_json::to_vec(&doc).unwrap_or_default();
    for _ in 0..2 {
        let parsed: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
        black_box(serde_json::to_vec(&parsed).map(|v| v.len()).unwrap_or(0));
    }
    let block = vec![0x5au8; 1 << 20];
    black_box(Sha256::digest(&block));
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut keys: Vec<u64> = (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect();
    let mut map = std::collections::HashMap::with_capacity(keys.len());
    for &k in &keys {
        map.insert(k, k >> 3);
    }
    black_box(map.len());
    keys.sort_unstable();
    black_box(keys[keys.len() / 2]);
}

/// One calibration slice, timed.
pub fn calibration_slice() -> Duration {
    let t = Instant::now();
    calibration_work();
    t.elapsed()
}

/// Runs of a piece of work, each next to a calibration slice. A shared machine's speed
/// moves within seconds (the same binary measured 1.1 and 1.6 M readings/s a minute
/// apart here), so each run is set against the slice timed right before it.
#[derive(Debug, Default, Clone)]
pub struct Timings {
    work: Vec<Duration>,
    relative: Vec<f64>,
}

impl Timings {
    /// Times `work` at least `runs` times and for at least `min_time`, each run after a
    /// calibration slice.
    pub fn measure(runs: usize, min_time: Duration, mut work: impl FnMut()) -> Timings {
        let mut t = Timings::default();
        let started = Instant::now();
        while t.work.len() < runs.max(1) || started.elapsed() < min_time {
            let calibration = calibration_slice();
            let at = Instant::now();
            work();
            t.push(at.elapsed(), calibration);
        }
        t
    }

    /// One run of `work`, next to the calibration slice timed for it.
    pub fn push(&mut self, work: Duration, calibration: Duration) {
        self.work.push(work);
        self.relative
            .push(work.as_secs_f64() / calibration.as_secs_f64().max(1e-9));
    }

    pub fn runs(&self) -> usize {
        self.work.len()
    }

    pub fn median(&self) -> Duration {
        let mut w = self.work.clone();
        w.sort();
        w.get(w.len() / 2).copied().unwrap_or_default()
    }

    /// The median of work time over calibration time, run by run.
    pub fn relative(&self) -> f64 {
        let mut r = self.relative.clone();
        r.sort_by(f64::total_cmp);
        r.get(r.len() / 2).copied().unwrap_or(f64::NAN)
    }

    /// Each run's work time and calibration time, for a figure made of several.
    pub fn pairs(&self) -> impl Iterator<Item = (Duration, f64)> + '_ {
        self.work
            .iter()
            .zip(&self.relative)
            .map(|(w, r)| (*w, w.as_secs_f64() / r))
    }
}

/// Why `make bench` fails.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(
        "{bench}: {figures} regressed more than {tolerance_percent:.0}% against \
         bench/baseline.json (per calibration, so not the machine): find the phase that moved \
         in the breakdown; if the change is intended, record a new baseline with \
         PULSELAKE_BENCH_RECORD=1 make bench"
    )]
    Regressed {
        bench: &'static str,
        figures: String,
        tolerance_percent: f64,
    },
    #[error("the baseline could not be written to {path}: {source}")]
    Record {
        path: String,
        source: std::io::Error,
    },
}

/// Per figure: its value here, its value per calibration slice, and whether more is better.
struct Figure {
    value: f64,
    per_calibration: f64,
    unit: &'static str,
    higher_is_better: bool,
    /// Whether a regression fails the bench (a phase's share is shown, not gated: phases
    /// timed alone or by difference are too noisy to fail on).
    gated: bool,
}

/// One bench binary's report: figures printed as they come, compared at the end.
pub struct Bench {
    name: &'static str,
    figures: BTreeMap<String, Figure>,
}

impl Bench {
    pub fn new(name: &'static str) -> Bench {
        calibration_work();
        Bench {
            name,
            figures: BTreeMap::new(),
        }
    }

    /// A throughput: `items` (in `unit`s) per run of `t`; more is better. Per
    /// calibration: items per calibration slice.
    pub fn rate(&mut self, key: &str, items: f64, unit: &'static str, t: &Timings) -> f64 {
        let value = items / t.median().as_secs_f64();
        self.add(key, value, items / t.relative(), unit, true)
    }

    /// A cost: a run of `t` over `items` (ns per item, or ms for one item); less is
    /// better. Per calibration: calibration slices per item.
    pub fn cost(&mut self, key: &str, items: f64, t: &Timings) -> f64 {
        let secs = t.median().as_secs_f64() / items;
        let (value, unit) = if items > 1.0 {
            (secs * 1e9, "ns")
        } else {
            (secs * 1e3, "ms")
        };
        self.add(key, value, t.relative() / items, unit, false)
    }

    /// One phase's cost, as [`Bench::cost`]: its change is shown, and a phase past the
    /// tolerance is marked, but only the whole path's figures fail the bench.
    pub fn phase(&mut self, key: &str, items: f64, t: &Timings) -> f64 {
        let per_calibration = self.cost(key, items, t);
        if let Some(f) = self.figures.get_mut(&format!("{}.{key}", self.name)) {
            f.gated = false;
        }
        per_calibration
    }

    /// A ratio between two programs measured in this run (more is better): already
    /// independent of the machine, so kept as it is.
    pub fn ratio(&mut self, key: &str, times: f64) -> f64 {
        self.add(key, times, times, "x", true)
    }

    fn add(
        &mut self,
        key: &str,
        value: f64,
        per_calibration: f64,
        unit: &'static str,
        higher_is_better: bool,
    ) -> f64 {
        self.figures.insert(
            format!("{}.{key}", self.name),
            Figure {
                value,
                per_calibration,
                unit,
                higher_is_better,
                gated: true,
            },
        );
        per_calibration
    }

    /// Per figure: its change against the baseline (per calibration), and whether that
    /// is a regression beyond the baseline's tolerance.
    fn compare(&self, baseline: &Value) -> Vec<(String, Option<f64>, bool)> {
        let tolerance = baseline["tolerance"].as_f64().unwrap_or(0.25);
        self.figures
            .iter()
            .map(|(key, f)| {
                let base = baseline["figures"][key.as_str()].as_f64();
                let change = base.map(|b| f.per_calibration / b - 1.0);
                let worse = change.is_some_and(|c| {
                    if f.higher_is_better {
                        c < -tolerance
                    } else {
                        c > tolerance
                    }
                });
                (key.clone(), change, worse && f.gated)
            })
            .collect()
    }

    /// Compares every figure with the baseline and prints the table; `Err` names the
    /// figures that regressed beyond the tolerance. With `PULSELAKE_BENCH_RECORD=1` the
    /// figures become the baseline instead.
    pub fn finish(self) -> Result<(), BenchError> {
        let path = baseline_path();
        let mut baseline: Value = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| json!({"tolerance": 0.25, "figures": {}}));
        let record = std::env::var("PULSELAKE_BENCH_RECORD").is_ok_and(|v| v == "1");
        let tolerance = baseline["tolerance"].as_f64().unwrap_or(0.25);
        let compared = self.compare(&baseline);
        println!(
            "  {:<30} {:>16} {:>16} {:>12}",
            "figure", "this machine", "per calibration", "vs baseline"
        );
        for (key, change, worse) in &compared {
            let f = &self.figures[key];
            println!(
                "  {:<30} {:>11.2} {:<4} {:>16} {:>12}{}",
                key,
                f.value,
                f.unit,
                significant(f.per_calibration),
                change.map_or("new".into(), |c| format!("{:+.0}%", c * 100.0)),
                if *worse {
                    "  REGRESSED"
                } else if !f.gated && change.is_some_and(|c| c.abs() > tolerance) {
                    "  (phase moved)"
                } else {
                    ""
                }
            );
            if record {
                let rounded: f64 = significant(f.per_calibration)
                    .parse()
                    .unwrap_or(f.per_calibration);
                baseline["figures"][key.as_str()] = json!(rounded);
            }
        }
        let regressed: Vec<&str> = compared
            .iter()
            .filter(|c| c.2)
            .map(|c| c.0.as_str())
            .collect();
        if record {
            let text = serde_json::to_string_pretty(&baseline).unwrap_or_default();
            std::fs::write(&path, text + "\n").map_err(|source| BenchError::Record {
                path: path.display().to_string(),
                source,
            })?;
            println!("  recorded as the baseline in {}", path.display());
            return Ok(());
        }
        if regressed.is_empty() {
            Ok(())
        } else {
            Err(BenchError::Regressed {
                bench: self.name,
                figures: regressed.join(", "),
                tolerance_percent: tolerance * 100.0,
            })
        }
    }
}

/// Four significant digits, whatever the magnitude.
fn significant(x: f64) -> String {
    if x != 0.0 && x.abs() < 0.01 {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}

/// The calibration slice's time now: the median of 5 (to set a measurement made outside
/// [`Timings`], such as a peer program's, against the machine's speed at that moment).
pub fn calibration_now() -> Duration {
    let mut t: Vec<Duration> = (0..5).map(|_| calibration_slice()).collect();
    t.sort();
    t[2]
}

fn baseline_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/baseline.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bench_with(figures: &[(&str, f64, bool)]) -> Bench {
        let mut b = Bench {
            name: "t",
            figures: BTreeMap::new(),
        };
        for &(key, per_calibration, higher_is_better) in figures {
            b.add(key, 1.0, per_calibration, "x", higher_is_better);
        }
        b
    }

    #[test]
    fn a_figure_worse_than_the_tolerance_regresses_and_one_within_it_does_not() {
        let baseline = json!({"tolerance": 0.25, "figures": {
            "t.rate_slower": 1.0, "t.rate_noisy": 1.0, "t.cost_higher": 1.0, "t.cost_lower": 1.0,
            "t.phase_worse": 1.0}});
        let mut b = bench_with(&[
            ("rate_slower", 0.7, true),
            ("rate_noisy", 0.9, true),
            ("cost_higher", 1.3, false),
            ("cost_lower", 0.5, false),
            ("new_one", 3.0, true),
            ("phase_worse", 2.0, false),
        ]);
        // A phase is shown, not gated.
        b.figures.get_mut("t.phase_worse").unwrap().gated = false;
        let regressed: Vec<String> = b
            .compare(&baseline)
            .into_iter()
            .filter(|c| c.2)
            .map(|c| c.0)
            .collect();
        assert_eq!(regressed, ["t.cost_higher", "t.rate_slower"]);
    }

    #[test]
    fn a_figure_is_set_against_the_slice_timed_with_each_run() {
        // The machine halves its speed for the second run: work and slice both take twice
        // as long, and the figure per calibration does not move.
        let mut t = Timings::default();
        t.push(Duration::from_millis(10), Duration::from_millis(5));
        t.push(Duration::from_millis(20), Duration::from_millis(10));
        t.push(Duration::from_millis(10), Duration::from_millis(5));
        assert_eq!(t.relative(), 2.0);
        let mut b = bench_with(&[]);
        assert_eq!(b.rate("r", 100.0, "x", &t), 50.0);
    }
}
