//! `pulselake`: the admin CLI. Run `pulselake --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pulselake_adapters::{DynamoAliases, DynamoRegistry, IotIdentities};
use pulselake_cli::devices::Devices;
use pulselake_cli::{AdminError, StackNames};
use pulselake_domain::time::parse_rfc3339_ms;

#[derive(Parser)]
#[command(
    name = "pulselake",
    about = "Operate a pulselake stack: devices (and, as it grows, partners, erasure, retention)."
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
    let registry = DynamoRegistry::from_config(&sdk, &names.registry_table);
    let identities = IotIdentities::from_config(&sdk, &names.device_policy);
    let aliases = DynamoAliases::from_config(&sdk, &names.alias_table);
    let Command::Devices(command) = cli.command;
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
