//! The fleet onboarded as ops onboard one: through the admin CLI's code (`pulselake
//! devices import` / `deactivate`), against the local stack's IoT, registry and aliases.

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
    let n = names();
    let registry = DynamoRegistry::from_config(&stack.sdk, &n.registry_table);
    let identities = IotIdentities::from_config(&stack.sdk, &n.device_policy);
    let aliases = DynamoAliases::from_config(&stack.sdk, &n.alias_table);
    let devices = Devices {
        registry: &registry,
        identities: &identities,
        aliases: &aliases,
        credentials_dir: None,
    };
    Ok(devices.import(&csv).await?.len())
}

/// Takes a device out of service at `at` (`pulselake devices deactivate`).
pub async fn deactivate(stack: &Stack, device_id: &str, at: i64) -> Result<usize> {
    let n = names();
    let registry = DynamoRegistry::from_config(&stack.sdk, &n.registry_table);
    let identities = IotIdentities::from_config(&stack.sdk, &n.device_policy);
    let aliases = DynamoAliases::from_config(&stack.sdk, &n.alias_table);
    let devices = Devices {
        registry: &registry,
        identities: &identities,
        aliases: &aliases,
        credentials_dir: None,
    };
    Ok(devices.deactivate(device_id, at).await?)
}

/// Adds a partner as ops add one (`pulselake partners add`): its policy, the JWK Set
/// of a fixture key, and a new pseudonym key in Secrets Manager.
pub async fn add_partner(stack: &Stack, client_id: &str, policy: &str, jwks: &str) -> Result<()> {
    let n = names();
    let partners = DynamoPartners::from_config(&stack.sdk, &n.partners_table);
    let secrets = SecretsManager::from_config(&stack.sdk);
    let admin = PartnerAdmin {
        partners: &partners,
        secrets: &secrets,
        secret_prefix: &n.partner_secret_prefix,
        kms_key: n.kms_key.as_deref(),
    };
    admin.add(client_id, policy, jwks).await?;
    Ok(())
}

/// Records an erasure request as ops would (`pulselake erasure request`); the subject
/// is tombstoned at once. Returns the request's reference.
pub async fn request_erasure(stack: &Stack, subject: &str, at: i64) -> Result<String> {
    let n = names();
    let requests = DynamoErasures::from_config(&stack.sdk, &n.erasure_table);
    let registry = DynamoRegistry::from_config(&stack.sdk, &n.registry_table);
    let aliases = DynamoAliases::from_config(&stack.sdk, &n.alias_table);
    let admin = ErasureAdmin {
        requests: &requests,
        registry: &registry,
        aliases: &aliases,
    };
    Ok(admin
        .request(subject, "dpo@example.org", "GDPR Art. 17 (demo)", at)
        .await?
        .request_id)
}

/// Suspends or reactivates a partner (`pulselake partners suspend` / `reactivate`).
pub async fn set_partner_status(stack: &Stack, client_id: &str, active: bool) -> Result<()> {
    let n = names();
    let partners = DynamoPartners::from_config(&stack.sdk, &n.partners_table);
    let secrets = SecretsManager::from_config(&stack.sdk);
    let admin = PartnerAdmin {
        partners: &partners,
        secrets: &secrets,
        secret_prefix: &n.partner_secret_prefix,
        kms_key: None,
    };
    let status = if active {
        PartnerStatus::Active
    } else {
        PartnerStatus::Suspended
    };
    admin.set_status(client_id, status).await?;
    Ok(())
}
