//! The partner and team side of the local stack, as `template.yaml` creates it: the
//! partners, export jobs, token claims, erasure and teams tables, the exports, audit and
//! Athena results buckets, the export queue and its DLQ, the KMS key that signs access
//! tokens, and Lake Formation's settings (no IAMAllowedPrincipals defaults).

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};

use crate::Result;
use crate::moto::{ACCOUNT, REGION};
use crate::names::Names;

/// The export queue's visibility timeout locally (AWS: 6x the worker's timeout).
pub const EXPORT_VISIBILITY_SECONDS: u32 = 5;

/// Creates the partner access resources.
pub async fn provision(sdk: &aws_config::SdkConfig, names: &Names) -> Result<()> {
    let s3 = pulselake_adapters::s3_client(sdk);
    for bucket in [
        &names.exports_bucket,
        &names.audit_bucket,
        &names.athena_results_bucket,
    ] {
        s3.create_bucket()
            .bucket(bucket)
            .create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(REGION))
                    .build(),
            )
            .send()
            .await?;
    }
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    for (table, hash) in [
        (&names.partners_table, "client_id"),
        (&names.token_claims_table, "id"),
        (&names.erasure_table, "subject_id"),
        (&names.teams_table, "team"),
    ] {
        dynamodb
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr(hash)?)
            .key_schema(key(hash, KeyType::Hash)?)
            .send()
            .await?;
    }
    dynamodb
        .create_table()
        .table_name(&names.export_jobs_table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("job")?)
        .attribute_definitions(attr("part")?)
        .key_schema(key("job", KeyType::Hash)?)
        .key_schema(key("part", KeyType::Range)?)
        .send()
        .await?;
    dynamodb
        .create_table()
        .table_name(&names.erasure_passes_table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pass")?)
        .attribute_definitions(attr("unit")?)
        .key_schema(key("pass", KeyType::Hash)?)
        .key_schema(key("unit", KeyType::Range)?)
        .send()
        .await?;

    use aws_sdk_sqs::types::QueueAttributeName as Q;
    let sqs = aws_sdk_sqs::Client::new(sdk);
    sqs.create_queue()
        .queue_name(&names.export_dlq)
        .send()
        .await?;
    let dlq_arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{}", names.export_dlq);
    sqs.create_queue()
        .queue_name(&names.export_queue)
        .attributes(Q::VisibilityTimeout, EXPORT_VISIBILITY_SECONDS.to_string())
        .attributes(
            Q::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3}).to_string(),
        )
        .send()
        .await?;
    sqs.create_queue()
        .queue_name(&names.erasure_dlq)
        .send()
        .await?;
    let erasure_dlq_arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{}", names.erasure_dlq);
    sqs.create_queue()
        .queue_name(&names.erasure_queue)
        .attributes(Q::VisibilityTimeout, EXPORT_VISIBILITY_SECONDS.to_string())
        .attributes(
            Q::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": erasure_dlq_arn, "maxReceiveCount": 3})
                .to_string(),
        )
        .send()
        .await?;

    let kms = aws_sdk_kms::Client::new(sdk);
    let created = kms
        .create_key()
        .key_spec(KeySpec::Rsa2048)
        .key_usage(KeyUsageType::SignVerify)
        .description("pulselake access token signing")
        .send()
        .await?;
    let key_id = created
        .key_metadata()
        .map(|m| m.key_id().to_owned())
        .ok_or("KMS created no key")?;
    kms.create_alias()
        .alias_name(&names.token_signing_key)
        .target_key_id(key_id)
        .send()
        .await?;
    // Lake Formation as the template's LakeFormationSettings leave it: new databases and
    // tables get no IAMAllowedPrincipals grant (moto records it, and enforces nothing).
    use aws_sdk_lakeformation::types::{DataLakePrincipal, DataLakeSettings};
    aws_sdk_lakeformation::Client::new(sdk)
        .put_data_lake_settings()
        .data_lake_settings(
            DataLakeSettings::builder()
                .data_lake_admins(
                    DataLakePrincipal::builder()
                        .data_lake_principal_identifier(format!(
                            "arn:aws:iam::{ACCOUNT}:role/pulselake-team-admin"
                        ))
                        .build(),
                )
                .set_create_database_default_permissions(Some(Vec::new()))
                .set_create_table_default_permissions(Some(Vec::new()))
                .build(),
        )
        .send()
        .await?;
    Ok(())
}

/// partner-api's configuration, as `template.yaml` sets it; `base_url` is where the
/// local API listens.
pub fn partner_api_config(
    names: &Names,
    base_url: &str,
    export_queue_url: &str,
) -> partner_api::Config {
    partner_api::Config {
        base_url: base_url.trim_end_matches('/').to_owned(),
        partners_table: names.partners_table.clone(),
        jobs_table: names.export_jobs_table.clone(),
        claims_table: names.token_claims_table.clone(),
        signing_key_id: names.token_signing_key.clone(),
        audit_bucket: names.audit_bucket.clone(),
        exports_bucket: names.exports_bucket.clone(),
        lake_bucket: names.lake_bucket.clone(),
        export_queue_url: export_queue_url.to_owned(),
    }
}

/// export-worker's configuration, as `template.yaml` sets it.
pub fn export_worker_config(names: &Names) -> export_worker::Config {
    export_worker::Config {
        jobs_table: names.export_jobs_table.clone(),
        partners_table: names.partners_table.clone(),
        registry_table: names.registry_table.clone(),
        lake_bucket: names.lake_bucket.clone(),
        exports_bucket: names.exports_bucket.clone(),
        audit_bucket: names.audit_bucket.clone(),
        erasure_table: names.erasure_table.clone(),
    }
}
