//! A simulated device fleet: v1 devices (many sensors per message) and ACME devices
//! (the flat vendor format, one reading per message), a share of faulty payloads,
//! and a ledger of exactly what was sent so the pipeline's results can be checked.

use std::collections::BTreeMap;

use pulselake_domain::time::{DAY_MS, format_rfc3339_ms};
use pulselake_domain::{Assignment, DeviceRecord, Metric, Reason};
use serde_json::json;

use crate::iot::topic_for;

#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub devices: usize,
    /// Sensors on each v1 device (ACME devices carry one sensor per vital type).
    pub sensors_per_device: usize,
    /// Share of devices speaking the ACME flat format.
    pub acme_share: f64,
    /// Share of messages made faulty.
    pub fault_share: f64,
    /// Seconds between reporting cycles.
    pub interval_s: i64,
    pub seed: u64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            devices: 200,
            sensors_per_device: 30,
            acme_share: 0.1,
            fault_share: 0.02,
            interval_s: 20,
            seed: 7,
        }
    }
}

/// Faults the simulator injects, each with the quarantine reason it must produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    CorruptJson,
    OutOfRange,
    UnknownUnit,
    ValueAsString,
    /// A device unknown to the registry, publishing on its own topic.
    UnknownDevice,
    /// A device publishing a message that claims another device of the fleet.
    ClaimsAnotherDevice,
}

const FAULTS: [Fault; 6] = [
    Fault::CorruptJson,
    Fault::OutOfRange,
    Fault::UnknownUnit,
    Fault::ValueAsString,
    Fault::UnknownDevice,
    Fault::ClaimsAnotherDevice,
];

#[derive(Debug, Clone)]
struct Sensor {
    id: String,
    metric: Metric,
    unit: &'static str,
}

#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    pub subject: String,
    acme: bool,
    sensors: Vec<Sensor>,
}

/// What was sent: the yardstick for the lake and the quarantine.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Ledger {
    pub messages: usize,
    /// Readings in messages that can be read (all but the corrupt ones).
    pub readings: usize,
    /// Messages sent corrupt (their readings cannot be counted by the pipeline).
    pub corrupt_messages: usize,
    /// Readings that must be quarantined, by reason.
    pub expected_quarantine: BTreeMap<Reason, usize>,
}

impl Ledger {
    pub fn expected_in_lake(&self) -> usize {
        self.readings - self.expected_quarantine.values().sum::<usize>()
    }
}

pub struct Fleet {
    pub devices: Vec<Device>,
    config: FleetConfig,
    rng: fastrand::Rng,
    rogue: usize,
    /// Devices taken out of service: what they still send belongs to nobody.
    retired: std::collections::BTreeSet<String>,
}

fn short(metric: Metric) -> &'static str {
    match metric {
        Metric::HeartRate => "hr",
        Metric::RespiratoryRate => "rr",
        Metric::Spo2 => "spo2",
        Metric::BodyTemp => "temp",
        Metric::BpSystolic => "sys",
        Metric::BpDiastolic => "dia",
        Metric::Glucose => "glu",
    }
}

fn acme_type(metric: Metric) -> &'static str {
    match metric {
        Metric::HeartRate => "HR",
        Metric::RespiratoryRate => "RR",
        Metric::Spo2 => "SPO2",
        Metric::BodyTemp => "TEMP",
        Metric::BpSystolic => "SYS",
        Metric::BpDiastolic => "DIA",
        Metric::Glucose => "GLU",
    }
}

impl Fleet {
    pub fn new(config: FleetConfig) -> Fleet {
        let mut rng = fastrand::Rng::with_seed(config.seed);
        let metrics: Vec<Metric> = Metric::all().collect();
        let devices = (0..config.devices)
            .map(|d| {
                let acme = rng.f64() < config.acme_share;
                let fahrenheit = rng.bool();
                let mmol = rng.bool();
                let sensors = if acme {
                    metrics
                        .iter()
                        .map(|&m| Sensor {
                            id: acme_type(m).into(),
                            metric: m,
                            unit: acme_unit(m),
                        })
                        .collect()
                } else {
                    (0..config.sensors_per_device)
                        .map(|i| {
                            let m = metrics[i % metrics.len()];
                            let unit = match m {
                                Metric::BodyTemp if fahrenheit => "[degF]",
                                Metric::Glucose if mmol => "mmol/L",
                                other => other.unit(),
                            };
                            Sensor {
                                id: format!("{}-{}", short(m), i / metrics.len()),
                                metric: m,
                                unit,
                            }
                        })
                        .collect()
                };
                let id = if acme {
                    format!("ACME-{:04}", 1000 + d)
                } else {
                    format!("dev-{d:06}")
                };
                Device {
                    id,
                    subject: format!("subj-{:08x}", rng.u32(..)),
                    acme,
                    sensors,
                }
            })
            .collect();
        Fleet {
            devices,
            config,
            rng,
            rogue: 0,
            retired: Default::default(),
        }
    }

    /// Registry entries: every device assigned to its subject since 90 days before `now_ms`;
    /// every fourth subject in the `cardiology` cohort, the others `adult` (partners'
    /// policies grant cohorts).
    pub fn registry(&self, now_ms: i64) -> Vec<DeviceRecord> {
        self.devices
            .iter()
            .enumerate()
            .map(|(i, d)| DeviceRecord {
                device_id: d.id.clone(),
                assignments: vec![Assignment {
                    subject_id: d.subject.clone(),
                    valid_from: now_ms - 90 * DAY_MS,
                    valid_to: None,
                    cohort: Some(if i % 4 == 0 { "cardiology" } else { "adult" }.to_owned()),
                }],
            })
            .collect()
    }

    fn value(&mut self, metric: Metric, unit: &str) -> f64 {
        let r = &mut self.rng;
        let v = match metric {
            Metric::HeartRate => 55.0 + r.f64() * 45.0,
            Metric::RespiratoryRate => 12.0 + r.f64() * 8.0,
            Metric::Spo2 => 94.0 + r.f64() * 5.0,
            Metric::BodyTemp => 36.3 + r.f64() * 1.2,
            Metric::BpSystolic => 105.0 + r.f64() * 30.0,
            Metric::BpDiastolic => 65.0 + r.f64() * 20.0,
            Metric::Glucose => 80.0 + r.f64() * 60.0,
        };
        let v = match unit {
            "[degF]" | "F" => v * 9.0 / 5.0 + 32.0,
            "mmol/L" | "mmol" => v / 18.0156,
            _ => v,
        };
        (v * 10.0).round() / 10.0
    }

    /// A device deactivated (its assignment ended): it keeps sending, without faults,
    /// and all of it must be quarantined.
    pub fn retire(&mut self, device_id: &str) {
        self.retired.insert(device_id.to_owned());
    }

    fn fault(&mut self) -> Option<Fault> {
        (self.rng.f64() < self.config.fault_share).then(|| FAULTS[self.rng.usize(..FAULTS.len())])
    }

    /// One reporting cycle at `at_ms`: every device publishes its readings.
    pub fn cycle(&mut self, at_ms: i64, ledger: &mut Ledger) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for d in 0..self.devices.len() {
            self.publish_device(d, at_ms, ledger, &mut out);
        }
        out
    }

    /// One device's messages of a cycle at `at_ms`.
    pub fn cycle_of(
        &mut self,
        device_id: &str,
        at_ms: i64,
        ledger: &mut Ledger,
    ) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        if let Some(d) = self.devices.iter().position(|x| x.id == device_id) {
            self.publish_device(d, at_ms, ledger, &mut out);
        }
        out
    }

    fn publish_device(
        &mut self,
        d: usize,
        at_ms: i64,
        ledger: &mut Ledger,
        out: &mut Vec<(String, Vec<u8>)>,
    ) {
        {
            let device = self.devices[d].clone();
            let retired = self.retired.contains(&device.id);
            if device.acme {
                for s in &device.sensors {
                    let fault = if retired { None } else { self.fault() };
                    let at = at_ms - self.rng.i64(0..2000);
                    let mut val = json!(self.value(s.metric, s.unit));
                    let (mut serial, mut uom) = (device.id.clone(), acme_uom(s.unit).to_owned());
                    match fault {
                        Some(Fault::OutOfRange) => val = json!(out_of_range(s.metric, s.unit)),
                        Some(Fault::UnknownUnit) => uom = "furlongs".into(),
                        Some(Fault::ValueAsString) => val = json!(val.to_string()),
                        Some(Fault::UnknownDevice) => serial = self.rogue_id(true),
                        Some(Fault::ClaimsAnotherDevice) => serial = self.other_device(d),
                        _ => {}
                    }
                    let publisher = match fault {
                        Some(Fault::UnknownDevice) => serial.clone(),
                        _ => device.id.clone(),
                    };
                    let payload = json!({"serial": serial, "type": acme_type(s.metric), "val": val, "uom": uom, "ts": at});
                    out.push(self.finish(&publisher, payload, fault, 1, retired, ledger));
                }
            } else {
                let fault = if retired { None } else { self.fault() };
                let faulty_reading = self.rng.usize(..device.sensors.len());
                let mut readings = Vec::with_capacity(device.sensors.len());
                for (i, s) in device.sensors.iter().enumerate() {
                    let at = at_ms - self.rng.i64(0..2000);
                    let mut value = json!(self.value(s.metric, s.unit));
                    let mut unit = s.unit.to_owned();
                    if i == faulty_reading {
                        match fault {
                            Some(Fault::OutOfRange) => {
                                value = json!(out_of_range(s.metric, s.unit))
                            }
                            Some(Fault::UnknownUnit) => unit = "furlongs".into(),
                            Some(Fault::ValueAsString) => value = json!(value.to_string()),
                            _ => {}
                        }
                    }
                    readings.push(
                        json!({"sensor_id": s.id, "metric": s.metric.name(), "value": value,
                                         "unit": unit, "measured_at": format_rfc3339_ms(at)}),
                    );
                }
                let device_id = match fault {
                    Some(Fault::UnknownDevice) => self.rogue_id(false),
                    Some(Fault::ClaimsAnotherDevice) => self.other_device(d),
                    _ => device.id.clone(),
                };
                let publisher = match fault {
                    Some(Fault::UnknownDevice) => device_id.clone(),
                    _ => device.id.clone(),
                };
                let payload = json!({"v": 1, "device_id": device_id, "message_id": format!("{:032x}", self.rng.u128(..)),
                                     "sent_at": format_rfc3339_ms(at_ms), "readings": readings});
                out.push(self.finish(
                    &publisher,
                    payload,
                    fault,
                    device.sensors.len(),
                    retired,
                    ledger,
                ));
            }
        }
    }

    fn rogue_id(&mut self, acme: bool) -> String {
        self.rogue += 1;
        if acme {
            format!("ACME-ROGUE-{}", self.rogue)
        } else {
            format!("dev-rogue-{}", self.rogue)
        }
    }

    /// Another device of the fleet than device `d` (itself in a fleet of one).
    fn other_device(&self, d: usize) -> String {
        self.devices[(d + 1) % self.devices.len()].id.clone()
    }

    /// The message as published by `publisher` (its topic), and what the ledger expects.
    fn finish(
        &mut self,
        publisher: &str,
        payload: serde_json::Value,
        fault: Option<Fault>,
        readings: usize,
        retired: bool,
        ledger: &mut Ledger,
    ) -> (String, Vec<u8>) {
        let mut bytes = serde_json::to_vec(&payload).unwrap_or_default();
        ledger.messages += 1;
        let mut expect =
            |r: Reason, n: usize| *ledger.expected_quarantine.entry(r).or_default() += n;
        match fault {
            Some(Fault::CorruptJson) => {
                bytes.truncate(bytes.len() / 2);
                ledger.corrupt_messages += 1;
                return (topic_for(publisher), bytes);
            }
            Some(Fault::OutOfRange) => expect(Reason::OutOfRange, 1),
            Some(Fault::UnknownUnit) => expect(Reason::UnknownUnit, 1),
            Some(Fault::ValueAsString) => expect(Reason::ValueNotNumber, 1),
            Some(Fault::UnknownDevice) => expect(Reason::UnknownDevice, readings),
            Some(Fault::ClaimsAnotherDevice) => expect(Reason::DeviceMismatch, readings),
            None if retired => expect(Reason::DeviceUnassigned, readings),
            None => {}
        }
        ledger.readings += readings;
        (topic_for(publisher), bytes)
    }
}

fn acme_unit(m: Metric) -> &'static str {
    match m {
        Metric::BodyTemp => "[degF]",
        other => other.unit(),
    }
}

/// The ACME device's own unit names (mapped by the `acme-flat` device mapping).
fn acme_uom(unit: &str) -> &str {
    match unit {
        "/min" => "bpm",
        "%" => "pct",
        "[degF]" => "F",
        "mm[Hg]" => "mmHg",
        "mg/dL" => "mgdl",
        other => other,
    }
}

fn out_of_range(m: Metric, unit: &str) -> f64 {
    let max = m.spec().max * 3.0 + 100.0;
    match unit {
        "[degF]" => max * 9.0 / 5.0 + 32.0,
        "mmol/L" => max / 18.0,
        _ => max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_is_deterministic_and_the_ledger_adds_up() {
        let cfg = FleetConfig {
            devices: 50,
            fault_share: 0.2,
            ..FleetConfig::default()
        };
        let (mut a, mut b) = (Fleet::new(cfg.clone()), Fleet::new(cfg));
        let (mut la, mut lb) = (Ledger::default(), Ledger::default());
        let ma = a.cycle(1_795_342_530_000, &mut la);
        let mb = b.cycle(1_795_342_530_000, &mut lb);
        assert_eq!(ma, mb);
        assert_eq!(la, lb);
        assert_eq!(la.messages, ma.len());
        assert!(la.corrupt_messages > 0 && !la.expected_quarantine.is_empty());
        assert!(la.expected_in_lake() < la.readings);
    }
}
