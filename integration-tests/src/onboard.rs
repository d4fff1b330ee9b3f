//! The admin CLI's code (`pulselake devices ...`, `partners ...`, `erasure ...`) run
//! against the local stack, as ops run it against a deployed one: the fleet onboarded,
//! partners added and suspended, erasure requests recorded.

use pulselake_adapters::{
    DynamoAliases, DynamoErasures, DynamoPartners, DynamoRegistry, IotIdentities, SecretsManager,
};
use pulselake_cli::StackNames;
use pulselake_cli::devices::Devices;
use pulselake_cli::erasure::ErasureAdmin;
use pulselake_cli::partners::PartnerAdmin;
use pulselake_domain::DeviceRecord;
use pulselake_domain::partner::PartnerStatus;
use pulselake_domain::time::format_rfc3339_ms;

use crate::Result;
use crate::provision::Stack;

/// The local stack's resources as the CLI names them.
pub fn names() -> StackNames {
    StackNames::local("pulselake")
}

/// The CLI's adapters on the local stack.
struct Admin {
    names: StackNames,
    registry: DynamoRegistry,
    identities: IotIdentities,
    aliases: DynamoAliases,
    partners: DynamoPartners,
    secrets: SecretsManager,
    erasures: DynamoErasures,
}

impl Admin {
    fn of(stack: &Stack) -> Admin {
        let names = names();
        Admin {
            registry: DynamoRegistry::from_config(&stack.sdk, &names.registry_table)
                .with_tombstones(&names.erasure_table),
            identities: IotIdentities::from_config(&stack.sdk, &names.device_policy),
            aliases: DynamoAliases::from_config(&stack.sdk, &names.alias_table),
            partners: DynamoPartners::from_config(&stack.sdk, &names.partners_table),
            secrets: SecretsManager::from_config(&stack.sdk),
            erasures: DynamoErasures::from_config(&stack.sdk, &names.erasure_table),
            names,
        }
    }

    fn devices(&self) -> Devices<'_, DynamoRegistry, IotIdentities, DynamoAliases> {
        Devices {
            registry: &self.registry,
            identities: &self.identities,
            aliases: &self.aliases,
            credentials_dir: None,
        }
    }

    fn partners(&self) -> PartnerAdmin<'_, DynamoPartners, SecretsManager> {
        PartnerAdmin {
            partners: &self.partners,
            secrets: &self.secrets,
            secret_prefix: &self.names.partner_secret_prefix,
            kms_key: self.names.kms_key.as_deref(),
        }
    }
}

/// Onboards devices (each with its first assignment) from the CSV ops would write.
pub async fn import(stack: &Stack, records: &[DeviceRecord]) -> Result<usize> {
    let mut csv = String::from("device_id,subject,valid_from,cohort\n");
    for r in records {
        for a in &r.assignments {
            csv.push_str(&format!(
                "{},{},{},{}\n",
                r.device_id,
                a.subject_id,
                format_rfc3339_ms(a.valid_from),
                a.cohort.as_deref().unwrap_or("")
            ));
        }
    }
    Ok(Admin::of(stack).devices().import(&csv).await?.len())
}

/// Takes a device out of service at `at` (`pulselake devices deactivate`).
pub async fn deactivate(stack: &Stack, device_id: &str, at: i64) -> Result<usize> {
    Ok(Admin::of(stack).devices().deactivate(device_id, at).await?)
}

/// Adds a partner as ops add one (`pulselake partners add`): its policy, the JWK Set
/// of a fixture key, and a new pseudonym key in Secrets Manager.
pub async fn add_partner(stack: &Stack, client_id: &str, policy: &str, jwks: &str) -> Result<()> {
    Admin::of(stack)
        .partners()
        .add(client_id, policy, jwks)
        .await?;
    Ok(())
}

/// Suspends or reactivates a partner (`pulselake partners suspend` / `reactivate`).
pub async fn set_partner_status(stack: &Stack, client_id: &str, active: bool) -> Result<()> {
    let status = if active {
        PartnerStatus::Active
    } else {
        PartnerStatus::Suspended
    };
    Admin::of(stack)
        .partners()
        .set_status(client_id, status)
        .await?;
    Ok(())
}

/// Records an erasure request as ops would (`pulselake erasure request`); the subject
/// is tombstoned at once. Returns the request's reference.
pub async fn request_erasure(stack: &Stack, subject: &str, at: i64) -> Result<String> {
    let a = Admin::of(stack);
    let admin = ErasureAdmin {
        requests: &a.erasures,
        registry: &a.registry,
        aliases: &a.aliases,
    };
    Ok(admin
        .request(subject, "dpo@example.org", "GDPR Art. 17 (demo)", at)
        .await?
        .request_id)
}
