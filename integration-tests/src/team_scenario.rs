//! Team environments on the local stack: two internal teams added with the CLI's own code
//! (`pulselake teams add`), what each sees through its compiled filter (DuckDB over the
//! lake, as `pulselake teams preview` shows it), checked against the lake read directly
//! with the policy's meaning, and what Lake Formation, Athena and the audit store hold.

use std::collections::BTreeMap;

use pulselake_adapters::{BucketAuditLog, DynamoTeams, S3Objects};
use pulselake_cli::StackNames;
use pulselake_cli::lake_formation::AwsTeamControl;
use pulselake_cli::preview::{Preview, copy_lake, preview};
use pulselake_cli::teams::{TeamAdmin, lake_table};
use pulselake_domain::team::{TeamPolicy, admits};
use pulselake_domain::time::{DAY_MS, format_rfc3339_ms};
use pulselake_domain::{Metric, Partition};

use crate::moto::venv_bin;
use crate::{LocalPlatform, Result, inspect};

/// The cardiology ML team: heart rate and SpO2 of the cardiology cohort, values and times,
/// no identifier.
pub fn cardio_ml_policy() -> String {
    r#"{"metrics":["heart_rate","spo2"],"cohorts":["cardiology"],
    "columns":["value","unit","measured_at","cohort"],
    "purpose":"arrhythmia model training","owner":"cardio-ml@example.org",
    "expires":"2099-01-01T00:00:00Z","dua":"IRB-2026-017",
    "budget":{"bytes_per_query":10000000000,"bytes_per_month":2000000000000},
    "role_arn":"arn:aws:iam::123456789012:role/pulselake-team-cardio-ml"}"#
        .into()
}

/// The BI team: every metric and cohort, one measurement day, the device id granted
/// (fleet reporting needs it; `list` shows it).
pub fn ops_bi_policy(day_start_ms: i64) -> String {
    format!(
        r#"{{"metrics":{},
        "cohorts":["*"],"earliest":"{}","latest":"{}",
        "columns":["device_id","value","measured_at","source"],
        "purpose":"fleet and data quality dashboards","owner":"bi@example.org",
        "expires":"2099-01-01T00:00:00Z","dua":"OPS-APPROVAL-12",
        "budget":{{"bytes_per_query":10000000000,"bytes_per_month":500000000000}},
        "role_arn":"arn:aws:iam::123456789012:role/pulselake-team-ops-bi"}}"#,
        serde_json::to_string(&all_metrics()).unwrap_or_default(),
        format_rfc3339_ms(day_start_ms),
        format_rfc3339_ms(day_start_ms + DAY_MS)
    )
}

#[derive(Debug, Default)]
pub struct TeamsReport {
    /// Per team: what the preview shows, and the rows per metric the lake holds for the
    /// policy (counted without the filter).
    pub teams: Vec<(String, Preview, BTreeMap<String, u64>)>,
    /// Lake Formation grants held by the teams' roles.
    pub grants: usize,
    pub workgroups: Vec<String>,
    /// Bad adds tried, each refused with nothing applied.
    pub refused: Vec<(String, String)>,
    pub half_applied: bool,
    pub audit_records: usize,
    pub list: Vec<String>,
}

impl TeamsReport {
    pub fn adds_up(&self) -> bool {
        self.teams.len() == 2
            && self.teams.iter().all(|(_, p, expected)| {
                let seen: BTreeMap<String, u64> =
                    p.metrics.iter().map(|m| (m.0.clone(), m.1)).collect();
                seen == *expected && p.visible > 0
            })
            && self.grants == 6
            && self.workgroups.len() == 2
            && !self.refused.is_empty()
            && !self.half_applied
    }
}

/// Rows per metric the lake holds that `policy` admits: the lake files read directly.
pub async fn expected_rows(
    platform: &LocalPlatform,
    policy: &TeamPolicy,
) -> Result<BTreeMap<String, u64>> {
    let stack = &platform.stack;
    let mut out = BTreeMap::new();
    for key in inspect::list_keys(stack, &stack.names.lake_bucket, "readings/").await? {
        let Some(p) = Partition::from_object_key(&key).filter(|_| key.ends_with(".parquet")) else {
            continue;
        };
        let bytes = inspect::get_bytes(stack, &stack.names.lake_bucket, &key).await?;
        for r in pulselake_lake::read_readings(bytes, p.metric)? {
            if admits(policy, r.metric.name(), r.cohort.as_deref(), r.measured_at) {
                *out.entry(r.metric.name().to_owned()).or_default() += 1;
            }
        }
    }
    Ok(out)
}

pub async fn run_teams(
    platform: &LocalPlatform,
    progress: &mut dyn FnMut(String),
) -> Result<TeamsReport> {
    let stack = &platform.stack;
    let sdk = &stack.sdk;
    let names = StackNames::local("pulselake");
    let records = DynamoTeams::from_config(sdk, &names.teams_table);
    let control = AwsTeamControl {
        lake_formation: aws_sdk_lakeformation::Client::new(sdk),
        athena: aws_sdk_athena::Client::new(sdk),
        cloudwatch: aws_sdk_cloudwatch::Client::new(sdk),
        catalog_id: names.account.clone(),
        database: names.lake_database.clone(),
        table: names.lake_table.clone(),
        results_bucket: names.results_bucket.clone(),
        kms_key: None,
        ops_topic: names.ops_topic.clone(),
        local: true,
    };
    let audit = BucketAuditLog {
        writer: S3Objects::from_config(sdk),
        bucket: names.audit_bucket.clone(),
    };
    let admin = TeamAdmin {
        teams: &records,
        control: &control,
        audit: &audit,
        table: lake_table()?,
    };
    let now = pulselake_adapters::now_ms();
    // The BI team's day: the day most of the lake's readings were measured on.
    let mut days: BTreeMap<i64, usize> = BTreeMap::new();
    for (p, rows) in inspect::lake(stack).await?.partitions {
        *days.entry(p.date.start_epoch_ms()).or_default() += rows;
    }
    let day = days
        .iter()
        .max_by_key(|(_, rows)| **rows)
        .map_or(now - now.rem_euclid(DAY_MS), |(d, _)| *d);
    let policies = [
        ("cardio-ml", cardio_ml_policy()),
        ("ops-bi", ops_bi_policy(day)),
    ];
    let mut r = TeamsReport::default();
    for (team, policy) in &policies {
        let c = admin.add(team, policy, now).await?;
        progress(format!(
            "team {team} added: workgroup {}, {} column(s), identifiers: {}; row filter {}",
            c.name,
            c.columns.len(),
            if c.identifiers.is_empty() {
                "none".to_owned()
            } else {
                c.identifiers.join(", ")
            },
            c.row_filter
        ));
    }

    // Bad input: each refused, nothing applied.
    let workgroups_before = workgroups(platform).await?.len();
    let bad = [
        ("cardio-ml", cardio_ml_policy(), "a second team of one name"),
        (
            "Bad Name",
            cardio_ml_policy(),
            "a name that is no workgroup name",
        ),
        (
            "wide",
            cardio_ml_policy().replace(r#""cohort"]"#, r#""cohort","ssn"]"#),
            "a column the lake does not have",
        ),
        (
            "late",
            ops_bi_policy(day).replace(
                &format!("\"earliest\":\"{}\"", format_rfc3339_ms(day)),
                &format!("\"earliest\":\"{}\"", format_rfc3339_ms(day + 3_600_000)),
            ),
            "a window Lake Formation cannot filter (not whole days)",
        ),
    ];
    for (team, policy, what) in bad {
        match admin.add(team, &policy, now).await {
            Ok(_) => r.half_applied = true,
            Err(e) => r.refused.push((
                what.to_owned(),
                e.to_string().lines().next().unwrap_or_default().to_owned(),
            )),
        }
    }
    r.half_applied |= workgroups(platform).await?.len() != workgroups_before;
    progress(format!(
        "{} bad team definitions refused, nothing applied",
        r.refused.len()
    ));

    // What each team sees: its filter, evaluated by DuckDB over the lake.
    let dir = std::env::temp_dir().join(format!(
        "pulselake-teams-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    let s3 = pulselake_adapters::s3_client(sdk);
    copy_lake(&s3, &names.lake_bucket, &dir).await?;
    for (team, policy) in &policies {
        let t = admin.get(team).await?;
        let shown = preview(
            &venv_bin("python"),
            &dir,
            &t.row_filter,
            &t.columns,
            &admin.table,
        );
        let expected = expected_rows(platform, &serde_json::from_str(policy)?).await?;
        r.teams.push(((*team).to_owned(), shown?, expected));
    }
    let _ = std::fs::remove_dir_all(&dir);

    let lf = aws_sdk_lakeformation::Client::new(sdk);
    let permissions = lf.list_permissions().send().await?;
    r.grants = permissions
        .principal_resource_permissions()
        .iter()
        .filter(|p| {
            p.principal()
                .and_then(|p| p.data_lake_principal_identifier())
                .is_some_and(|id| id.contains(":role/pulselake-team-"))
        })
        .count();
    r.workgroups = workgroups(platform).await?;
    r.audit_records = inspect::list_keys(stack, &names.audit_bucket, "records/kind=teams/")
        .await?
        .len();
    r.list = admin.list(now).await?;
    Ok(r)
}

/// The teams' Athena workgroups.
pub async fn workgroups(platform: &LocalPlatform) -> Result<Vec<String>> {
    let athena = aws_sdk_athena::Client::new(&platform.stack.sdk);
    let out = athena.list_work_groups().send().await?;
    Ok(out
        .work_groups()
        .iter()
        .filter_map(|w| w.name())
        .filter(|n| n.starts_with("pulselake-team-"))
        .map(str::to_owned)
        .collect())
}

/// Every metric name, for policies that grant them all.
pub fn all_metrics() -> Vec<&'static str> {
    Metric::all().map(Metric::name).collect()
}
