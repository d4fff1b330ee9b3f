//! The metric catalog: what each vital is, its LOINC code, its canonical UCUM unit,
//! the units accepted on input (with their conversion), and the physiologically
//! plausible range used to reject sensor faults.

use std::fmt;

/// A vital sign the platform knows. The lake partitions by [`Metric::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    HeartRate,
    RespiratoryRate,
    Spo2,
    BodyTemp,
    BpSystolic,
    BpDiastolic,
    Glucose,
}

/// How an accepted input unit becomes the canonical unit: `canonical = value * scale + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conversion {
    pub unit: &'static str,
    pub scale: f64,
    pub offset: f64,
}

const fn same(unit: &'static str) -> Conversion {
    Conversion {
        unit,
        scale: 1.0,
        offset: 0.0,
    }
}

const fn linear(unit: &'static str, scale: f64, offset: f64) -> Conversion {
    Conversion {
        unit,
        scale,
        offset,
    }
}

/// One catalog entry.
#[derive(Debug)]
pub struct MetricSpec {
    pub metric: Metric,
    pub name: &'static str,
    /// The LOINC code the lake records for this metric.
    pub loinc: &'static str,
    /// Other LOINC codes that denote the same measurement.
    pub loinc_alternates: &'static [&'static str],
    /// Canonical UCUM unit (case-sensitive UCUM).
    pub unit: &'static str,
    /// Units accepted on input. The first is the canonical unit itself.
    pub accepted: &'static [Conversion],
    /// Inclusive plausible range in the canonical unit.
    pub min: f64,
    pub max: f64,
}

/// Glucose: 1 mmol/L = 18.0156 mg/dL (molar mass 180.156 g/mol).
const GLUCOSE_MG_PER_MMOL: f64 = 18.0156;
/// 1 kPa = 7.500 616 8 mm[Hg].
const MMHG_PER_KPA: f64 = 7.500_616_8;

static CATALOG: [MetricSpec; 7] = [
    MetricSpec {
        metric: Metric::HeartRate,
        name: "heart_rate",
        loinc: "8867-4",
        loinc_alternates: &[],
        unit: "/min",
        accepted: &[
            same("/min"),
            same("{beats}/min"),
            same("beats/min"),
            same("bpm"),
        ],
        min: 20.0,
        max: 300.0,
    },
    MetricSpec {
        metric: Metric::RespiratoryRate,
        name: "respiratory_rate",
        loinc: "9279-1",
        loinc_alternates: &[],
        unit: "/min",
        accepted: &[
            same("/min"),
            same("{breaths}/min"),
            same("breaths/min"),
            same("brpm"),
        ],
        min: 0.0,
        max: 100.0,
    },
    MetricSpec {
        metric: Metric::Spo2,
        name: "spo2",
        loinc: "59408-5",
        loinc_alternates: &["2708-6"],
        unit: "%",
        accepted: &[
            same("%"),
            linear("1", 100.0, 0.0),
            linear("{ratio}", 100.0, 0.0),
        ],
        min: 40.0,
        max: 100.0,
    },
    MetricSpec {
        metric: Metric::BodyTemp,
        name: "body_temp",
        loinc: "8310-5",
        loinc_alternates: &[],
        unit: "Cel",
        accepted: &[
            same("Cel"),
            same("°C"),
            same("degC"),
            linear("[degF]", 5.0 / 9.0, -32.0 * 5.0 / 9.0),
            linear("°F", 5.0 / 9.0, -32.0 * 5.0 / 9.0),
            linear("degF", 5.0 / 9.0, -32.0 * 5.0 / 9.0),
            linear("K", 1.0, -273.15),
        ],
        min: 25.0,
        max: 45.0,
    },
    MetricSpec {
        metric: Metric::BpSystolic,
        name: "bp_systolic",
        loinc: "8480-6",
        loinc_alternates: &[],
        unit: "mm[Hg]",
        accepted: &[
            same("mm[Hg]"),
            same("mmHg"),
            linear("kPa", MMHG_PER_KPA, 0.0),
        ],
        min: 40.0,
        max: 300.0,
    },
    MetricSpec {
        metric: Metric::BpDiastolic,
        name: "bp_diastolic",
        loinc: "8462-4",
        loinc_alternates: &[],
        unit: "mm[Hg]",
        accepted: &[
            same("mm[Hg]"),
            same("mmHg"),
            linear("kPa", MMHG_PER_KPA, 0.0),
        ],
        min: 20.0,
        max: 200.0,
    },
    MetricSpec {
        metric: Metric::Glucose,
        name: "glucose",
        loinc: "2339-0",
        loinc_alternates: &[],
        unit: "mg/dL",
        accepted: &[same("mg/dL"), linear("mmol/L", GLUCOSE_MG_PER_MMOL, 0.0)],
        min: 10.0,
        max: 1000.0,
    },
];

/// Why a value could not be normalized.
#[derive(Debug, Clone, PartialEq)]
pub enum NormalizeError {
    UnknownUnit,
    OutOfRange { canonical: f64 },
    NonFinite,
}

impl Metric {
    /// Every metric, in catalog order.
    /// How many metrics there are (for per-metric tables indexed by `metric as usize`).
    pub const COUNT: usize = 7;

    pub fn all() -> impl Iterator<Item = Metric> {
        CATALOG.iter().map(|s| s.metric)
    }

    /// Looks a metric up by its canonical name (`heart_rate`, `spo2`, ...).
    pub fn from_name(name: &str) -> Option<Metric> {
        CATALOG.iter().find(|s| s.name == name).map(|s| s.metric)
    }

    pub fn spec(self) -> &'static MetricSpec {
        // The catalog is ordered like the enum; the match keeps that checked by the compiler.
        let i = match self {
            Metric::HeartRate => 0,
            Metric::RespiratoryRate => 1,
            Metric::Spo2 => 2,
            Metric::BodyTemp => 3,
            Metric::BpSystolic => 4,
            Metric::BpDiastolic => 5,
            Metric::Glucose => 6,
        };
        &CATALOG[i]
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    pub fn loinc(self) -> &'static str {
        self.spec().loinc
    }

    pub fn unit(self) -> &'static str {
        self.spec().unit
    }

    /// Converts `value` in `unit` to the canonical unit and checks the plausible range.
    pub fn normalize(self, value: f64, unit: &str) -> Result<f64, NormalizeError> {
        let canonical = self.convert(value, unit)?;
        if !self.is_plausible(canonical) {
            return Err(NormalizeError::OutOfRange { canonical });
        }
        Ok(canonical)
    }

    /// Converts `value` in `unit` to the canonical unit, whatever the value.
    pub fn convert(self, value: f64, unit: &str) -> Result<f64, NormalizeError> {
        if !value.is_finite() {
            return Err(NormalizeError::NonFinite);
        }
        let conv = self
            .spec()
            .accepted
            .iter()
            .find(|c| c.unit == unit)
            .ok_or(NormalizeError::UnknownUnit)?;
        let canonical = round_to_micro(value * conv.scale + conv.offset);
        if !canonical.is_finite() {
            return Err(NormalizeError::NonFinite);
        }
        Ok(canonical)
    }

    /// Inside the catalog's plausible range (a canonical value).
    pub fn is_plausible(self, canonical: f64) -> bool {
        let spec = self.spec();
        (spec.min..=spec.max).contains(&canonical)
    }
}

/// Converted values are rounded to 6 decimals so that 98.6 degF is 37 Cel, not 36.99999999999999.
fn round_to_micro(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_matches_the_enum_and_the_architecture_brief() {
        for m in Metric::all() {
            assert_eq!(m.spec().metric, m, "catalog order must follow the enum");
            assert_eq!(Metric::from_name(m.name()), Some(m));
            assert_eq!(
                m.spec().accepted[0].unit,
                m.unit(),
                "canonical unit is accepted first"
            );
            assert!(m.spec().min < m.spec().max);
        }
        let expect = [
            ("heart_rate", "8867-4", "/min"),
            ("respiratory_rate", "9279-1", "/min"),
            ("spo2", "59408-5", "%"),
            ("body_temp", "8310-5", "Cel"),
            ("bp_systolic", "8480-6", "mm[Hg]"),
            ("bp_diastolic", "8462-4", "mm[Hg]"),
            ("glucose", "2339-0", "mg/dL"),
        ];
        for (name, loinc, unit) in expect {
            let m = Metric::from_name(name).unwrap();
            assert_eq!((m.loinc(), m.unit()), (loinc, unit));
        }
        assert!(Metric::Spo2.spec().loinc_alternates.contains(&"2708-6"));
    }

    #[test]
    fn converts_accepted_units_to_canonical() {
        assert_eq!(Metric::BodyTemp.normalize(98.6, "[degF]"), Ok(37.0));
        assert_eq!(Metric::BodyTemp.normalize(310.15, "K"), Ok(37.0));
        assert_eq!(Metric::Glucose.normalize(5.5, "mmol/L"), Ok(99.0858));
        assert_eq!(Metric::Spo2.normalize(0.975, "1"), Ok(97.5));
        assert_eq!(Metric::BpSystolic.normalize(16.0, "kPa"), Ok(120.009869));
        assert_eq!(Metric::HeartRate.normalize(72.0, "bpm"), Ok(72.0));
    }

    #[test]
    fn rejects_units_that_cannot_be_converted() {
        assert_eq!(
            Metric::HeartRate.normalize(72.0, "mg/dL"),
            Err(NormalizeError::UnknownUnit)
        );
        assert_eq!(
            Metric::BodyTemp.normalize(37.0, "cel"),
            Err(NormalizeError::UnknownUnit)
        );
        assert_eq!(
            Metric::Glucose.normalize(99.0, ""),
            Err(NormalizeError::UnknownUnit)
        );
    }

    #[test]
    fn rejects_implausible_and_non_finite_values() {
        assert!(matches!(
            Metric::HeartRate.normalize(420.0, "/min"),
            Err(NormalizeError::OutOfRange { .. })
        ));
        assert!(matches!(
            Metric::Spo2.normalize(101.0, "%"),
            Err(NormalizeError::OutOfRange { .. })
        ));
        assert_eq!(
            Metric::Spo2.normalize(100.0, "%"),
            Ok(100.0),
            "range is inclusive"
        );
        assert_eq!(
            Metric::HeartRate.normalize(f64::NAN, "/min"),
            Err(NormalizeError::NonFinite)
        );
        assert_eq!(
            Metric::HeartRate.normalize(f64::INFINITY, "/min"),
            Err(NormalizeError::NonFinite)
        );
    }
}
