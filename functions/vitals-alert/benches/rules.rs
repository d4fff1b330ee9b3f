//! `make bench`: alert rule evaluation on one core. The deployed default rules over
//! 1,000,000 readings of 4,000 subjects (every metric, values now and then out of
//! range): finding the applicable rules and applying each reading to its pair's state,
//! as the function does once a batch's pairs are loaded. Reports readings/s.

use std::collections::HashMap;
use std::time::Instant;

use pulselake_domain::Metric;
use pulselake_domain::alerting::{DEFAULT_RULES, RuleSet, RuleState, Step};

const SUBJECTS: usize = 4_000;
const READINGS: usize = 1_000_000;

fn main() {
    let rules = RuleSet::from_json(DEFAULT_RULES).expect("the default rules are valid");
    let metrics: Vec<Metric> = Metric::all().collect();
    // The readings, as the handler has them after validation: subject, metric, time, value.
    let readings: Vec<(u32, Metric, i64, f64)> = (0..READINGS)
        .map(|i| {
            let subject = (i % SUBJECTS) as u32;
            let metric = metrics[(i / SUBJECTS) % metrics.len()];
            let spec = metric.spec();
            let mid = (spec.min + spec.max) / 2.0;
            // Mostly normal, now and then far off, so every rule kind does its work.
            let value = if i % 97 == 0 {
                spec.min + 1.0
            } else {
                mid + (i % 7) as f64 * 0.1
            };
            (
                subject,
                metric,
                1_795_342_530_000 + (i / SUBJECTS) as i64 * 20_000,
                value,
            )
        })
        .collect();
    let smoke = !std::env::args().any(|a| a == "--bench");
    let take = if smoke { 10_000 } else { READINGS };
    let mut best = f64::MAX;
    let mut fired = 0usize;
    for _ in 0..if smoke { 1 } else { 5 } {
        let mut states: HashMap<(u32, usize), RuleState> = HashMap::with_capacity(SUBJECTS * 4);
        fired = 0;
        let t = Instant::now();
        for &(subject, metric, at, value) in &readings[..take] {
            for rule in rules.applicable(metric, None) {
                let state = states.entry((subject, rule)).or_default();
                if let Step::Fired(_) = rules.rule(rule).apply(state, at, value, true) {
                    fired += 1;
                }
            }
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    assert!(fired > 0, "the data makes rules fire");
    if smoke {
        println!(
            "vitals-alert bench: rules evaluated on {take} readings (run `make bench` to measure)"
        );
        return;
    }
    println!(
        "vitals-alert rule evaluation: {} readings x {} rules in {:.1} ms (best of 5) = {:.2} M readings/s on one core; {} alerts raised",
        READINGS,
        rules.rules().len(),
        best * 1e3,
        READINGS as f64 / best / 1e6,
        fired
    );
}
