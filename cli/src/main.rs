//! `pulselake`: the admin CLI. Run `pulselake --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pulselake_adapters::{
    DynamoAliases, DynamoErasurePasses, DynamoErasures, DynamoPartners, DynamoRegistry,
    IotIdentities, SecretsManager, now_ms,
};
use pulselake_cli::devices::Devices;
use pulselake_cli::erasure::ErasureAdmin;
use pulselake_cli::partners::PartnerAdmin;
use pulselake_cli::{AdminError, StackNames};
use pulselake_domain::time::parse_rfc3339_ms;

#[derive(Parser)]
#[command(
    name = "pulselake",
    about = "Operate a pulselake stack: devices, partners, team environments and erasure requests."
)]
struct Cli {
    /// The CloudFormation stack (its outputs name the resources).
    #[arg(long, default_value = "pulselake", global = true)]
    stack: String,
    /// Work on the local stack (moto at AWS_ENDPOINT_URL) instead of a deployed one.
    #[arg(long, global = true)]
    local: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Device onboarding and life cycle.
    #[command(subcommand)]
    Devices(DeviceCommand),
    /// Partners of the export API: policies, keys, status, pseudonym keys.
    #[command(subcommand)]
    Partners(PartnerCommand),
    /// GDPR erasure requests: record one (the subject is tombstoned at once), list them.
    #[command(subcommand)]
    Erasure(ErasureCommand),
    /// Team environments: internal teams query the lake through Lake Formation filters
    /// compiled from their policy, each in an Athena workgroup of its own.
    #[command(subcommand)]
    Teams(TeamCommand),
    /// Migration: reconcile a legacy source with the lake.
    #[command(subcommand)]
    Migrate(MigrateCommand),
}

#[derive(Subcommand)]
enum MigrateCommand {
    /// Compare a legacy source's readings per device and day with the lake's (counts and
    /// a checksum of reading ids). Exits 3 when more readings differ than --threshold.
    Reconcile {
        /// A counts file: device_id,day,readings[,checksum].
        #[arg(
            long,
            conflicts_with = "from_export",
            required_unless_present = "from_export"
        )]
        source: Option<PathBuf>,
        /// A legacy export in the generic CSV layout: its counts are computed here.
        #[arg(long)]
        from_export: Option<PathBuf>,
        /// Write the source's counts here (to run the comparison later, or elsewhere).
        #[arg(long)]
        write_counts: Option<PathBuf>,
        /// Readings that may differ (missing plus extra) before the command fails.
        #[arg(long, default_value_t = 0)]
        threshold: u64,
    },
}

async fn migrate(
    sdk: &aws_config::SdkConfig,
    names: &StackNames,
    command: MigrateCommand,
) -> Result<(), AdminError> {
    use pulselake_adapters::{AuditLog, BucketAuditLog, S3Objects};
    use pulselake_cli::migrate::{audit_record, counts_of_export, lake_counts, report_lines};
    use pulselake_domain::reconcile::{counts_csv, parse_counts, reconcile};
    let MigrateCommand::Reconcile {
        source,
        from_export,
        write_counts,
        threshold,
    } = command;
    let (named, counts) = match (&source, &from_export) {
        (Some(path), _) => (
            path.display().to_string(),
            parse_counts(&read(path)?).map_err(|e| AdminError::Refused(e.0))?,
        ),
        (None, Some(path)) => (path.display().to_string(), counts_of_export(&read(path)?)?),
        (None, None) => {
            return Err(AdminError::Refused(vec![
                "give --source or --from-export".into(),
            ]));
        }
    };
    if let Some(path) = &write_counts {
        std::fs::write(path, counts_csv(&counts))
            .map_err(|e| AdminError::Setup(format!("cannot write {}: {e}", path.display())))?;
    }
    let days: std::collections::BTreeSet<_> = counts.keys().map(|k| k.1).collect();
    let s3 = pulselake_adapters::s3_client(sdk);
    let mut keys = Vec::new();
    for day in &days {
        for metric in pulselake_domain::Metric::all() {
            let prefix = pulselake_domain::Partition { metric, date: *day }.prefix();
            let mut pages = s3
                .list_objects_v2()
                .bucket(&names.lake_bucket)
                .prefix(&prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page =
                    page.map_err(|e| AdminError::Setup(format!("cannot list the lake: {e}")))?;
                keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key())
                        .map(str::to_owned),
                );
            }
        }
    }
    eprintln!(
        "reading {} lake file(s) on {} day(s) named by the source",
        keys.len(),
        days.len()
    );
    let lake = lake_counts(&keys, &days, |key| {
        let s3 = s3.clone();
        let bucket = names.lake_bucket.clone();
        async move {
            let out = s3
                .get_object()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| AdminError::Setup(format!("cannot read {key}: {e}")))?;
            Ok(out
                .body
                .collect()
                .await
                .map_err(|e| AdminError::Setup(format!("cannot read {key}: {e}")))?
                .into_bytes())
        }
    })
    .await?;
    let r = reconcile(&counts, &lake);
    for line in report_lines(&r) {
        println!("{line}");
    }
    let now = now_ms();
    let audit = BucketAuditLog {
        writer: S3Objects::from_config(sdk),
        bucket: names.audit_bucket.clone(),
    };
    audit
        .append(
            "migration",
            now,
            &audit_record(&r, &named, &pulselake_domain::time::format_rfc3339_ms(now)),
        )
        .await?;
    let differing =
        r.missing() + r.extra() + r.differences.iter().filter(|d| d.missing() == 0).count() as u64;
    if differing > threshold {
        eprintln!("{differing} reading(s) differ, more than the threshold ({threshold})");
        std::process::exit(3);
    }
    Ok(())
}

#[derive(Subcommand)]
enum TeamCommand {
    /// Add a team: its policy (JSON, see docs/teams.md) becomes a data cells filter, grants
    /// to the team's role, a workgroup and a budget alarm. Nothing is left if a step fails.
    Add {
        team: String,
        #[arg(long)]
        policy: PathBuf,
    },
    /// Replace a team's policy (filter, grants, limits and alarm follow).
    UpdatePolicy {
        team: String,
        #[arg(long)]
        policy: PathBuf,
    },
    /// Revoke a team's grant at once and disable its workgroup.
    Suspend { team: String },
    /// Let a suspended team back in (not once its policy has expired).
    Reactivate { team: String },
    /// Remove a team: grant, filter, workgroup and alarm.
    Remove { team: String },
    /// Suspend every team whose policy has expired (run daily).
    Sweep,
    /// Teams: status, scope, identifiers granted, spend against budget, expiry.
    List,
    /// What a team sees (local stack): its filter evaluated with DuckDB over the lake.
    Preview { team: String },
}

async fn teams(
    sdk: &aws_config::SdkConfig,
    names: &StackNames,
    command: TeamCommand,
) -> Result<(), AdminError> {
    use pulselake_adapters::{BucketAuditLog, DynamoTeams, S3Objects};
    use pulselake_cli::lake_formation::AwsTeamControl;
    use pulselake_cli::teams::{TeamAdmin, lake_table};
    let records = DynamoTeams::from_config(sdk, &names.teams_table);
    let control = AwsTeamControl {
        lake_formation: aws_sdk_lakeformation::Client::new(sdk),
        athena: aws_sdk_athena::Client::new(sdk),
        cloudwatch: aws_sdk_cloudwatch::Client::new(sdk),
        catalog_id: names.account.clone(),
        database: names.lake_database.clone(),
        table: names.lake_table.clone(),
        results_bucket: names.results_bucket.clone(),
        kms_key: names.kms_key.clone(),
        ops_topic: names.ops_topic.clone(),
        local: names.local,
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
    let now = now_ms();
    match command {
        TeamCommand::Add { team, policy } => {
            let c = admin.add(&team, &read(&policy)?, now).await?;
            let identifiers = if c.identifiers.is_empty() {
                String::new()
            } else {
                format!(", identifiers granted: {}", c.identifiers.join(", "))
            };
            println!(
                "added team {team}: workgroup {}, results under s3://{}/{}, {} column(s){identifiers}",
                c.name,
                names.results_bucket,
                c.results_prefix,
                c.columns.len(),
            );
            println!("row filter: {}", c.row_filter);
        }
        TeamCommand::UpdatePolicy { team, policy } => {
            let c = admin.update_policy(&team, &read(&policy)?, now).await?;
            println!("{team}: policy replaced; row filter: {}", c.row_filter);
        }
        TeamCommand::Suspend { team } => {
            admin.suspend(&team, now).await?;
            println!("{team} suspended: grant revoked, workgroup disabled");
        }
        TeamCommand::Reactivate { team } => {
            admin.reactivate(&team, now).await?;
            println!("{team} active again");
        }
        TeamCommand::Remove { team } => {
            admin.remove(&team, now).await?;
            println!("{team} removed: grant, filter, workgroup and alarm");
        }
        TeamCommand::Sweep => {
            let suspended = admin.sweep(now).await?;
            println!(
                "{} expired team(s) suspended {}",
                suspended.len(),
                suspended.join(", ")
            );
        }
        TeamCommand::List => {
            for line in admin.list(now).await? {
                println!("{line}");
            }
        }
        TeamCommand::Preview { team } => {
            if !names.local {
                return Err(AdminError::Refused(vec![
                    "preview evaluates the filter over the local lake (--local); on AWS, query through the team's workgroup".into(),
                ]));
            }
            let t = admin.get(&team).await?;
            let dir = std::env::temp_dir()
                .join(format!("pulselake-preview-{}-{now}", std::process::id()));
            let s3 = pulselake_adapters::s3_client(sdk);
            pulselake_cli::preview::copy_lake(&s3, &names.lake_bucket, &dir).await?;
            let shown = pulselake_cli::preview::preview(
                &pulselake_cli::preview::duckdb_python(),
                &dir,
                &t.row_filter,
                &t.columns,
                &admin.table,
            );
            let _ = std::fs::remove_dir_all(&dir);
            for line in shown?.lines(&team) {
                println!("{line}");
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum ErasureCommand {
    /// Record a subject's erasure request. From now on their devices and legacy keys
    /// no longer attribute readings to them and exports skip them; the erasure function
    /// clears the lake and records the evidence.
    Request {
        subject: String,
        /// Who asked (a person, or a ticket reference).
        #[arg(long)]
        by: String,
        /// Why (e.g. "GDPR Art. 17, request 2026-118").
        #[arg(long)]
        reason: String,
        /// Also retire the subject's devices (their certificates revoked: they can no
        /// longer connect). Without it the devices stay, unassigned, for reassignment;
        /// either way nothing they send is kept under the subject.
        #[arg(long)]
        retire_devices: bool,
    },
    /// Requests with their status and evidence (no subject ids), and the latest pass's
    /// progress.
    List,
}

async fn erasure(
    sdk: &aws_config::SdkConfig,
    names: &StackNames,
    command: ErasureCommand,
) -> Result<(), AdminError> {
    let requests = DynamoErasures::from_config(sdk, &names.erasure_table);
    let registry = DynamoRegistry::from_config(sdk, &names.registry_table)
        .with_tombstones(&names.erasure_table);
    let aliases = DynamoAliases::from_config(sdk, &names.alias_table);
    let admin = ErasureAdmin {
        requests: &requests,
        registry: &registry,
        aliases: &aliases,
    };
    match command {
        ErasureCommand::Request {
            subject,
            by,
            reason,
            retire_devices,
        } => {
            let now = now_ms();
            let r = admin.request(&subject, &by, &reason, now).await?;
            println!(
                "{}: recorded; {} device assignment(s) and {} alias(es) removed; the erasure function completes it (see `pulselake erasure list`)",
                r.request_id, r.assignments_removed, r.aliases_removed
            );
            if retire_devices {
                let identities = IotIdentities::from_config(sdk, &names.device_policy);
                let devices = Devices {
                    registry: &registry,
                    identities: &identities,
                    aliases: &aliases,
                    credentials_dir: None,
                };
                for d in &r.devices {
                    let revoked = devices.deactivate(d, now).await?;
                    println!("{d}: retired ({revoked} certificate(s) revoked)");
                }
            }
        }
        ErasureCommand::List => {
            for line in admin.list().await? {
                println!("{line}");
            }
            let passes = DynamoErasurePasses::from_config(sdk, &names.erasure_passes_table);
            if let Some(line) = pulselake_cli::erasure::pass_progress(&passes).await? {
                println!("{line}");
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum PartnerCommand {
    /// Add a partner: its policy (JSON) and the public keys it signs with (a JWK Set).
    Add {
        client_id: String,
        #[arg(long)]
        policy: PathBuf,
        #[arg(long)]
        jwks: PathBuf,
    },
    /// Replace a partner's policy.
    UpdatePolicy {
        client_id: String,
        #[arg(long)]
        policy: PathBuf,
    },
    /// Replace the public keys a partner signs with.
    SetKeys {
        client_id: String,
        #[arg(long)]
        jwks: PathBuf,
    },
    /// Stop a partner at once: no new tokens, and its tokens stop working.
    Suspend { client_id: String },
    /// Let a suspended partner back in.
    Reactivate { client_id: String },
    /// A new pseudonym key version for a partner's later exports.
    RotateKey { client_id: String },
    /// Partners, their status, policy and pseudonym key version.
    List,
}

fn read(path: &PathBuf) -> Result<String, AdminError> {
    std::fs::read_to_string(path)
        .map_err(|e| AdminError::Setup(format!("cannot read {}: {e}", path.display())))
}

async fn partners(
    sdk: &aws_config::SdkConfig,
    names: &StackNames,
    command: PartnerCommand,
) -> Result<(), AdminError> {
    use pulselake_domain::partner::PartnerStatus;
    let table = DynamoPartners::from_config(sdk, &names.partners_table);
    let secrets = SecretsManager::from_config(sdk);
    let admin = PartnerAdmin {
        partners: &table,
        secrets: &secrets,
        secret_prefix: &names.partner_secret_prefix,
        kms_key: names.kms_key.as_deref(),
    };
    match command {
        PartnerCommand::Add {
            client_id,
            policy,
            jwks,
        } => {
            let p = admin
                .add(&client_id, &read(&policy)?, &read(&jwks)?)
                .await?;
            println!(
                "added partner {} (pseudonym key in {})",
                p.client_id, p.key_secret
            );
        }
        PartnerCommand::UpdatePolicy { client_id, policy } => {
            admin.update_policy(&client_id, &read(&policy)?).await?;
            println!("{client_id}: policy replaced");
        }
        PartnerCommand::SetKeys { client_id, jwks } => {
            admin.set_keys(&client_id, &read(&jwks)?).await?;
            println!("{client_id}: public keys replaced");
        }
        PartnerCommand::Suspend { client_id } => {
            admin
                .set_status(&client_id, PartnerStatus::Suspended)
                .await?;
            println!("{client_id} suspended");
        }
        PartnerCommand::Reactivate { client_id } => {
            admin.set_status(&client_id, PartnerStatus::Active).await?;
            println!("{client_id} active again");
        }
        PartnerCommand::RotateKey { client_id } => {
            let v = admin.rotate_key(&client_id).await?;
            println!("{client_id}: pseudonym key version {v} is current");
        }
        PartnerCommand::List => {
            for line in admin.list().await? {
                println!("{line}");
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Register a device: IoT thing, certificate with the device policy, registry item.
    Register {
        device_id: String,
        /// Subject id, or a legacy patient key `system:key`.
        #[arg(long)]
        subject: String,
        /// RFC 3339; now when omitted.
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        cohort: Option<String>,
        /// Where the certificate and private key are written.
        #[arg(long, default_value = ".")]
        credentials: PathBuf,
    },
    /// Register every device of a CSV (device_id,subject,valid_from[,cohort]).
    Import {
        csv: PathBuf,
        #[arg(long, default_value = ".")]
        credentials: PathBuf,
    },
    /// Assign a device to another subject (the current assignment ends then).
    Assign {
        device_id: String,
        #[arg(long)]
        subject: String,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        cohort: Option<String>,
    },
    /// Revoke a device's certificates and end its assignment.
    Deactivate {
        device_id: String,
        #[arg(long)]
        at: Option<String>,
    },
    /// Devices, their active certificates and who wears them now.
    List,
}

fn time(arg: Option<&str>) -> Result<i64, AdminError> {
    match arg {
        None => Ok(now_ms()),
        Some(s) => parse_rfc3339_ms(s)
            .ok_or_else(|| AdminError::Refused(vec![format!("{s:?} is not an RFC 3339 time")])),
    }
}

async fn run(cli: Cli) -> Result<(), AdminError> {
    let sdk = pulselake_adapters::load_config().await;
    let names = if cli.local {
        StackNames::local(&cli.stack)
    } else {
        StackNames::deployed(&sdk, &cli.stack).await?
    };
    let command = match cli.command {
        Command::Devices(c) => c,
        Command::Partners(c) => return partners(&sdk, &names, c).await,
        Command::Erasure(c) => return erasure(&sdk, &names, c).await,
        Command::Teams(c) => return teams(&sdk, &names, c).await,
        Command::Migrate(c) => return migrate(&sdk, &names, c).await,
    };
    let registry = DynamoRegistry::from_config(&sdk, &names.registry_table)
        .with_tombstones(&names.erasure_table);
    let identities = IotIdentities::from_config(&sdk, &names.device_policy);
    let aliases = DynamoAliases::from_config(&sdk, &names.alias_table);
    let credentials = match &command {
        DeviceCommand::Register { credentials, .. } | DeviceCommand::Import { credentials, .. } => {
            Some(credentials.clone())
        }
        _ => None,
    };
    let devices = Devices {
        registry: &registry,
        identities: &identities,
        aliases: &aliases,
        credentials_dir: credentials.as_deref(),
    };
    match command {
        DeviceCommand::Register {
            device_id,
            subject,
            from,
            cohort,
            ..
        } => {
            let r = devices
                .register(&device_id, &subject, time(from.as_deref())?, cohort)
                .await?;
            println!(
                "registered {} (certificate {})",
                r.device_id, r.certificate_id
            );
        }
        DeviceCommand::Import { csv, .. } => {
            let text = std::fs::read_to_string(&csv)
                .map_err(|e| AdminError::Setup(format!("cannot read {}: {e}", csv.display())))?;
            let done = devices.import(&text).await?;
            println!("registered {} devices from {}", done.len(), csv.display());
        }
        DeviceCommand::Assign {
            device_id,
            subject,
            from,
            cohort,
        } => {
            devices
                .assign(&device_id, &subject, time(from.as_deref())?, cohort)
                .await?;
            println!("{device_id} assigned");
        }
        DeviceCommand::Deactivate { device_id, at } => {
            let revoked = devices.deactivate(&device_id, time(at.as_deref())?).await?;
            println!("{device_id} deactivated: {revoked} certificate(s) revoked, assignment ended");
        }
        DeviceCommand::List => {
            for line in devices.list(now_ms()).await? {
                println!("{line}");
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(AdminError::Refused(problems)) => {
            eprintln!("nothing was changed:");
            for p in problems {
                eprintln!("  {p}");
            }
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("pulselake: {e}");
            ExitCode::FAILURE
        }
    }
}
