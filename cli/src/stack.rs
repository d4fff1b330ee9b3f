//! Where the stack's resources are: read from the CloudFormation stack's outputs for a
//! deployed stack, or named by convention on the local stack.

use aws_config::SdkConfig;

use crate::AdminError;

/// The deployed stack's outputs the admin commands read (`template.yaml` declares them).
pub const STACK_OUTPUTS: [&str; 13] = [
    "DeviceRegistryTableName",
    "SubjectAliasTableName",
    "DevicePolicyName",
    "PartnersTableName",
    "DataKeyArn",
    "ErasureTableName",
    "ErasurePassesTableName",
    "TeamsTableName",
    "LakeBucketName",
    "LakeDatabaseName",
    "AthenaResultsBucketName",
    "AuditBucketName",
    "OpsTopicArn",
];

/// The resources the admin commands work on.
#[derive(Debug, Clone, PartialEq)]
pub struct StackNames {
    pub registry_table: String,
    pub alias_table: String,
    pub device_policy: String,
    pub partners_table: String,
    /// Partners' pseudonym keys are the secrets named `<prefix><client id>`.
    pub partner_secret_prefix: String,
    /// The stack's KMS key (none locally).
    pub kms_key: Option<String>,
    pub erasure_table: String,
    /// Erasure passes and their progress.
    pub erasure_passes_table: String,
    /// Team environments.
    pub teams_table: String,
    pub lake_bucket: String,
    pub lake_database: String,
    /// The readings table in the lake database.
    pub lake_table: String,
    /// Teams' query results go under `teams/<team>/` here.
    pub results_bucket: String,
    pub audit_bucket: String,
    pub ops_topic: String,
    /// The account owning the Glue catalog.
    pub account: String,
    /// Whether this is the local stack (moto), which lacks some team operations.
    pub local: bool,
}

/// The account moto answers as.
const LOCAL_ACCOUNT: &str = "123456789012";

impl StackNames {
    /// The local stack's names for a stack called `stack` (the harness provisions them
    /// under the names CloudFormation would give a stack with fixed names).
    pub fn local(stack: &str) -> StackNames {
        StackNames {
            registry_table: format!("{stack}-device-registry"),
            alias_table: format!("{stack}-subject-aliases"),
            device_policy: format!("{stack}-device"),
            partners_table: format!("{stack}-partners"),
            partner_secret_prefix: format!("{stack}/partners/"),
            kms_key: None,
            erasure_table: format!("{stack}-erasure-requests"),
            erasure_passes_table: format!("{stack}-erasure-passes"),
            teams_table: format!("{stack}-teams"),
            lake_bucket: format!("{stack}-lake-{LOCAL_ACCOUNT}"),
            lake_database: format!("{stack}_lake"),
            lake_table: "readings".into(),
            results_bucket: format!("{stack}-athena-results-{LOCAL_ACCOUNT}"),
            audit_bucket: format!("{stack}-audit-{LOCAL_ACCOUNT}"),
            ops_topic: format!("arn:aws:sns:eu-west-1:{LOCAL_ACCOUNT}:{stack}-ops"),
            account: LOCAL_ACCOUNT.into(),
            local: true,
        }
    }

    /// The names a deployed stack's outputs give.
    pub async fn deployed(sdk: &SdkConfig, stack: &str) -> Result<StackNames, AdminError> {
        let cf = aws_sdk_cloudformation::Client::new(sdk);
        let out = cf
            .describe_stacks()
            .stack_name(stack)
            .send()
            .await
            .map_err(|e| AdminError::Setup(format!("cannot read stack {stack}: {e}")))?;
        let outputs = out
            .stacks()
            .first()
            .map(|s| s.outputs().to_vec())
            .unwrap_or_default();
        let output = |key: &str| {
            outputs
                .iter()
                .find(|o| o.output_key() == Some(key))
                .and_then(|o| o.output_value())
                .map(str::to_owned)
                .ok_or_else(|| AdminError::Setup(format!("stack {stack} has no output {key}")))
        };
        Ok(StackNames {
            registry_table: output("DeviceRegistryTableName")?,
            alias_table: output("SubjectAliasTableName")?,
            device_policy: output("DevicePolicyName")?,
            partners_table: output("PartnersTableName")?,
            partner_secret_prefix: format!("{stack}/partners/"),
            kms_key: Some(output("DataKeyArn")?),
            erasure_table: output("ErasureTableName")?,
            erasure_passes_table: output("ErasurePassesTableName")?,
            teams_table: output("TeamsTableName")?,
            lake_bucket: output("LakeBucketName")?,
            lake_database: output("LakeDatabaseName")?,
            lake_table: "readings".into(),
            results_bucket: output("AthenaResultsBucketName")?,
            audit_bucket: output("AuditBucketName")?,
            ops_topic: output("OpsTopicArn")?,
            // arn:aws:kms:<region>:<account>:key/<id>
            account: output("DataKeyArn")?
                .split(':')
                .nth(4)
                .unwrap_or_default()
                .to_owned(),
            local: false,
        })
    }
}
