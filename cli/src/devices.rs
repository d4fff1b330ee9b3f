//! `pulselake devices ...`: register, assign, import, deactivate, list. Each command
//! checks everything it can before it changes anything, and says what it did.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use pulselake_adapters::{DeviceIdentities, RegistryAdmin, RegistryWrite, SubjectAliases};
use pulselake_domain::DeviceRecord;
use pulselake_domain::onboarding::{self, Onboard, is_alias};
use pulselake_domain::time::format_rfc3339_ms;

use crate::AdminError;

/// The ports the device commands use.
pub struct Devices<'a, R, I, A> {
    pub registry: &'a R,
    pub identities: &'a I,
    pub aliases: &'a A,
    /// Where new certificates and keys are written (`<device>.cert.pem`, `.key.pem`);
    /// `None` discards them (the local demo: its devices never connect to a broker).
    pub credentials_dir: Option<&'a Path>,
}

/// What a registration produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    pub device_id: String,
    pub certificate_id: String,
}

/// Read-modify-write attempts before a change gives up on a record that keeps changing.
const CHANGE_ATTEMPTS: usize = 5;

/// The subjects a record attributes readings to.
fn subjects_of(record: &DeviceRecord) -> Vec<String> {
    let mut s: Vec<String> = record
        .assignments
        .iter()
        .map(|a| a.subject_id.clone())
        .collect();
    s.sort();
    s.dedup();
    s
}

fn tombstoned(subject: &str) -> String {
    format!(
        "subject {subject} has an erasure request: no device is ever assigned to them again (see `pulselake erasure list`)"
    )
}

impl<R: RegistryAdmin, I: DeviceIdentities, A: SubjectAliases> Devices<'_, R, I, A> {
    /// Registers the devices of an onboarding CSV. Every line is checked first (format,
    /// duplicates, devices registered already, unknown patient keys): one bad line and
    /// nothing is registered. Re-running after a transient failure skips the devices
    /// registered by the first run (they are then "registered already").
    pub async fn import(&self, csv: &str) -> Result<Vec<Registered>, AdminError> {
        let rows = onboarding::parse_csv(csv)
            .map_err(|e| AdminError::Refused(e.iter().map(ToString::to_string).collect()))?;
        let plan = self.plan(&rows).await?;
        let mut done = Vec::with_capacity(plan.len());
        for record in plan {
            done.push(self.register_record(&record).await?);
        }
        Ok(done)
    }

    /// Registers one device, assigned to `subject` from `from` on.
    pub async fn register(
        &self,
        device_id: &str,
        subject: &str,
        from: i64,
        cohort: Option<String>,
    ) -> Result<Registered, AdminError> {
        let row = Onboard {
            line: 1,
            device_id: device_id.to_owned(),
            subject: subject.to_owned(),
            valid_from: from,
            cohort,
        };
        let mut plan = self.plan(std::slice::from_ref(&row)).await?;
        match plan.pop() {
            Some(record) => self.register_record(&record).await,
            None => Err(AdminError::Setup("nothing to register".into())),
        }
    }

    async fn plan(&self, rows: &[Onboard]) -> Result<Vec<DeviceRecord>, AdminError> {
        let ids: Vec<&str> = rows.iter().map(|r| r.device_id.as_str()).collect();
        let existing: BTreeMap<String, DeviceRecord> = self
            .registry
            .fetch(&ids)
            .await?
            .into_iter()
            .map(|r| (r.device_id.clone(), r))
            .collect();
        let mut aliases = HashMap::new();
        for r in rows.iter().filter(|r| is_alias(&r.subject)) {
            if !aliases.contains_key(&r.subject) {
                let subject = self.aliases.resolve(&r.subject).await?;
                aliases.insert(r.subject.clone(), subject);
            }
        }
        let plan = onboarding::plan(rows, &existing, &aliases)
            .map_err(|e| AdminError::Refused(e.iter().map(ToString::to_string).collect()))?;
        let subjects: Vec<String> = plan.iter().flat_map(subjects_of).collect();
        let erased = self.registry.erased(&subjects).await?;
        if !erased.is_empty() {
            return Err(AdminError::Refused(
                erased.iter().map(|s| tombstoned(s)).collect(),
            ));
        }
        Ok(plan)
    }

    /// The identity first, the registry item last: a device is in the registry (and
    /// its readings accepted) only once it can authenticate.
    async fn register_record(&self, record: &DeviceRecord) -> Result<Registered, AdminError> {
        let credentials = self.identities.register(&record.device_id).await?;
        if let Some(dir) = self.credentials_dir {
            let write = |ext: &str, text: &str| {
                std::fs::write(dir.join(format!("{}.{ext}", record.device_id)), text)
                    .map_err(|e| AdminError::Setup(format!("cannot write the credentials: {e}")))
            };
            write("cert.pem", &credentials.certificate_pem)?;
            write("key.pem", &credentials.private_key)?;
        }
        let refused = match self.registry.write(record, 0, &subjects_of(record)).await? {
            RegistryWrite::Written => {
                return Ok(Registered {
                    device_id: record.device_id.clone(),
                    certificate_id: credentials.certificate_id,
                });
            }
            RegistryWrite::Changed => {
                format!("device {} was registered meanwhile", record.device_id)
            }
            RegistryWrite::Tombstoned(s) => tombstoned(&s),
        };
        // Nothing half done: the identity made for it goes too.
        self.identities.revoke(&record.device_id).await?;
        Err(AdminError::Refused(vec![refused]))
    }

    /// Assigns a registered device to another subject from `from` on, ending the
    /// assignment in force then.
    pub async fn assign(
        &self,
        device_id: &str,
        subject: &str,
        from: i64,
        cohort: Option<String>,
    ) -> Result<DeviceRecord, AdminError> {
        let subject = self.subject(subject).await?;
        self.change(device_id, std::slice::from_ref(&subject), |record| {
            record
                .assign(&subject, from, cohort.clone())
                .map_err(|e| AdminError::Refused(vec![e.to_string()]))
        })
        .await
    }

    /// Reads the device's record, applies `change` and writes it over the version read
    /// (`attributes`: the subjects it newly attributes readings to, checked against the
    /// erasure requests in the same write). A concurrent change makes it read and apply
    /// again; a tombstoned subject is refused.
    async fn change(
        &self,
        device_id: &str,
        attributes: &[String],
        change: impl Fn(&mut DeviceRecord) -> Result<(), AdminError>,
    ) -> Result<DeviceRecord, AdminError> {
        for _ in 0..CHANGE_ATTEMPTS {
            let (mut record, version) = self.existing(device_id).await?;
            change(&mut record)?;
            match self.registry.write(&record, version, attributes).await? {
                RegistryWrite::Written => return Ok(record),
                RegistryWrite::Changed => continue,
                RegistryWrite::Tombstoned(s) => {
                    return Err(AdminError::Refused(vec![tombstoned(&s)]));
                }
            }
        }
        Err(AdminError::Setup(format!(
            "device {device_id} kept changing while this change was made; try again"
        )))
    }

    /// Takes a device out of service at `at`: its certificates are revoked (it can no
    /// longer connect) and its assignment ends (anything it still sends is quarantined).
    pub async fn deactivate(&self, device_id: &str, at: i64) -> Result<usize, AdminError> {
        let (record, _) = self.existing(device_id).await?;
        if record.open_assignment().is_some() {
            self.change(device_id, &[], |record| {
                if record.open_assignment().is_none() {
                    return Ok(());
                }
                record
                    .end_at(at)
                    .map_err(|e| AdminError::Refused(vec![e.to_string()]))
            })
            .await?;
        }
        Ok(self.identities.revoke(device_id).await?)
    }

    /// One line per device: its active certificates and who wears it now.
    pub async fn list(&self, now: i64) -> Result<Vec<String>, AdminError> {
        let active = self.identities.active_certificates().await?;
        Ok(self
            .registry
            .all()
            .await?
            .iter()
            .map(|(r, _)| {
                let wearer = match r.assignment_at(now) {
                    Some(a) => {
                        format!("{} since {}", a.subject_id, format_rfc3339_ms(a.valid_from))
                    }
                    None => "unassigned".to_owned(),
                };
                let certs = active.get(&r.device_id).copied().unwrap_or(0);
                format!(
                    "{:<24} {certs} active certificate(s)  {wearer}",
                    r.device_id
                )
            })
            .collect())
    }

    async fn existing(&self, device_id: &str) -> Result<(DeviceRecord, u64), AdminError> {
        self.registry.read(device_id).await?.ok_or_else(|| {
            AdminError::Refused(vec![format!("device {device_id} is not registered")])
        })
    }

    async fn subject(&self, subject: &str) -> Result<String, AdminError> {
        if !is_alias(subject) {
            return Ok(subject.to_owned());
        }
        self.aliases.resolve(subject).await?.ok_or_else(|| {
            AdminError::Refused(vec![format!("subject {subject} is an unknown patient key")])
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use pulselake_adapters::{MemoryAliases, MemoryIdentities, MemoryRegistry, RegistryLookup};
    use pulselake_domain::time::parse_rfc3339_ms;

    use super::*;

    fn t(s: &str) -> i64 {
        parse_rfc3339_ms(s).unwrap()
    }

    struct Fixture {
        registry: MemoryRegistry,
        identities: MemoryIdentities,
        aliases: MemoryAliases,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                registry: MemoryRegistry::new([]),
                identities: MemoryIdentities::default(),
                aliases: MemoryAliases(HashMap::from([("seed:P1".into(), "subj-p1".into())])),
            }
        }

        fn devices(&self) -> Devices<'_, MemoryRegistry, MemoryIdentities, MemoryAliases> {
            Devices {
                registry: &self.registry,
                identities: &self.identities,
                aliases: &self.aliases,
                credentials_dir: None,
            }
        }
    }

    #[tokio::test]
    async fn a_csv_registers_every_device_with_a_certificate_or_none_at_all() {
        let f = Fixture::new();
        let good = "device_id,subject,valid_from\ndev-1,subj-1,2026-11-01T00:00:00Z\ndev-2,seed:P1,2026-11-01T00:00:00Z\n";
        let done = f.devices().import(good).await.unwrap();
        assert_eq!(done.len(), 2);
        assert_eq!(f.registry.all().await.unwrap().len(), 2);
        let bad = "device_id,subject,valid_from\ndev-3,subj-3,2026-11-01T00:00:00Z\ndev-1,subj-1,2026-11-01T00:00:00Z\ndev-4,seed:P9,2026-11-01T00:00:00Z\n";
        let AdminError::Refused(problems) = f.devices().import(bad).await.unwrap_err() else {
            panic!("refused")
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("line 3:") && problems[1].starts_with("line 4:"));
        assert_eq!(
            f.registry.all().await.unwrap().len(),
            2,
            "dev-3 was not half-registered"
        );
        assert!(!f.identities.things.lock().unwrap().contains_key("dev-3"));
    }

    #[tokio::test]
    async fn reassigning_ends_the_open_assignment_and_deactivation_revokes_and_ends() {
        let f = Fixture::new();
        let d = f.devices();
        d.register("dev-1", "subj-1", t("2026-11-01T00:00:00Z"), None)
            .await
            .unwrap();
        d.assign("dev-1", "subj-2", t("2026-11-10T00:00:00Z"), None)
            .await
            .unwrap();
        let r = f.registry.fetch(&["dev-1"]).await.unwrap().pop().unwrap();
        assert_eq!(r.subject_at(t("2026-11-05T00:00:00Z")), Some("subj-1"));
        assert_eq!(r.subject_at(t("2026-11-11T00:00:00Z")), Some("subj-2"));
        // Overlapping the past is refused.
        assert!(matches!(
            d.assign("dev-1", "subj-3", t("2026-11-09T00:00:00Z"), None)
                .await,
            Err(AdminError::Refused(_))
        ));
        assert_eq!(
            d.deactivate("dev-1", t("2026-11-20T00:00:00Z"))
                .await
                .unwrap(),
            1
        );
        let r = f.registry.fetch(&["dev-1"]).await.unwrap().pop().unwrap();
        assert_eq!(r.subject_at(t("2026-11-21T00:00:00Z")), None);
        let lines = d.list(t("2026-11-21T00:00:00Z")).await.unwrap();
        assert!(lines[0].contains("0 active certificate(s)") && lines[0].contains("unassigned"));
    }
}
