//! Creates on the local stack the resources `template.yaml` creates in AWS, under the same names.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_firehose::types::{DeliveryStreamType, ExtendedS3DestinationConfiguration};
use aws_sdk_kinesis::types::StreamStatus;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use pulselake_adapters::registry::device_item;
use pulselake_domain::DeviceRecord;
use pulselake_domain::mapping::BUILTIN_MAPPINGS;

use crate::Result;
use crate::moto::{ACCOUNT, REGION};
use crate::names::Names;

/// The files queue's visibility timeout on the local stack (AWS: 6x the function timeout).
pub const FILES_VISIBILITY_SECONDS: u32 = 2;

/// Clients for every service the harness drives, and the provisioned resources.
pub struct Stack {
    pub sdk: SdkConfig,
    pub names: Names,
    pub s3: aws_sdk_s3::Client,
    pub kinesis: aws_sdk_kinesis::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub firehose: aws_sdk_firehose::Client,
    pub stream_arn: String,
    pub stream_failures_queue_url: String,
    pub files_queue_url: String,
    pub files_dlq_url: String,
    pub ops_topic_arn: String,
    pub ops_inbox_url: String,
    pub catalog_queue_url: String,
    pub catalog_dlq_url: String,
    pub glue: aws_sdk_glue::Client,
    pub sns: aws_sdk_sns::Client,
    pub alerts_topic_arn: String,
    pub alerts_inbox_url: String,
    pub export_queue_url: String,
    pub export_dlq_url: String,
    pub erasure_queue_url: String,
}

async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<String> {
    let out = sqs.get_queue_url().queue_name(name).send().await?;
    Ok(out.queue_url().unwrap_or_default().to_owned())
}

impl Stack {
    /// Clients for an already provisioned stack.
    pub async fn connect(sdk: SdkConfig, names: Names) -> Result<Stack> {
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let stream_failures_queue_url = queue_url(&sqs, &names.stream_failures_queue).await?;
        let files_queue_url = queue_url(&sqs, &names.files_queue).await?;
        let files_dlq_url = queue_url(&sqs, &names.files_dlq).await?;
        let ops_inbox_url = queue_url(&sqs, &names.ops_inbox).await?;
        let catalog_queue_url = queue_url(&sqs, &names.catalog_queue).await?;
        let catalog_dlq_url = queue_url(&sqs, &names.catalog_dlq).await?;
        let alerts_inbox_url = queue_url(&sqs, &names.alerts_inbox).await?;
        let export_queue_url = queue_url(&sqs, &names.export_queue).await?;
        let export_dlq_url = queue_url(&sqs, &names.export_dlq).await?;
        let erasure_queue_url = queue_url(&sqs, &names.erasure_queue).await?;
        Ok(Stack {
            erasure_queue_url,
            export_queue_url,
            export_dlq_url,
            sns: aws_sdk_sns::Client::new(&sdk),
            alerts_topic_arn: format!("arn:aws:sns:{REGION}:{ACCOUNT}:{}", names.alerts_topic),
            alerts_inbox_url,
            glue: aws_sdk_glue::Client::new(&sdk),
            catalog_queue_url,
            catalog_dlq_url,
            s3: pulselake_adapters::s3_client(&sdk),
            kinesis: aws_sdk_kinesis::Client::new(&sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            ssm: aws_sdk_ssm::Client::new(&sdk),
            firehose: aws_sdk_firehose::Client::new(&sdk),
            stream_arn: format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{}", names.stream),
            stream_failures_queue_url,
            files_queue_url,
            files_dlq_url,
            ops_topic_arn: format!("arn:aws:sns:{REGION}:{ACCOUNT}:{}", names.ops_topic),
            ops_inbox_url,
            sqs,
            names,
            sdk,
        })
    }

    /// Provisions every resource on an empty local stack.
    pub async fn provision(sdk: SdkConfig, shards: i32) -> Result<Stack> {
        let names = Names::default();
        let s3 = pulselake_adapters::s3_client(&sdk);
        for bucket in [
            &names.lake_bucket,
            &names.quarantine_bucket,
            &names.firehose_buffer_bucket,
            &names.staging_bucket,
            &names.processed_bucket,
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
        // Versioned as in template.yaml: a re-upload under the same name is a new version.
        // Not the lake: moto sends no `ObjectRemoved:DeleteMarkerCreated` notification (S3
        // does), and catalog-sync must hear of files going away to drop emptied partitions.
        for bucket in [
            &names.quarantine_bucket,
            &names.staging_bucket,
            &names.processed_bucket,
        ] {
            use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
            s3.put_bucket_versioning()
                .bucket(bucket)
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await?;
        }

        let kinesis = aws_sdk_kinesis::Client::new(&sdk);
        kinesis
            .create_stream()
            .stream_name(&names.stream)
            .shard_count(shards)
            .send()
            .await?;
        for _ in 0..50 {
            let d = kinesis
                .describe_stream_summary()
                .stream_name(&names.stream)
                .send()
                .await?;
            if d.stream_description_summary().map(|s| s.stream_status())
                == Some(&StreamStatus::Active)
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }

        let firehose = aws_sdk_firehose::Client::new(&sdk);
        firehose
            .create_delivery_stream()
            .delivery_stream_name(&names.delivery_stream)
            .delivery_stream_type(DeliveryStreamType::DirectPut)
            .extended_s3_destination_configuration(
                ExtendedS3DestinationConfiguration::builder()
                    .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/pulselake-firehose"))
                    .bucket_arn(format!("arn:aws:s3:::{}", names.firehose_buffer_bucket))
                    .prefix("raw/")
                    .build()?,
            )
            .send()
            .await?;

        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        for (table, key) in [
            (&names.registry_table, "device_id"),
            (&names.dedup_table, "id"),
            (&names.alias_table, "alias"),
            (&names.alert_state_table, "key"),
            (&names.heartbeat_table, "device_id"),
        ] {
            dynamodb
                .create_table()
                .table_name(table)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(key)
                        .attribute_type(ScalarAttributeType::S)
                        .build()?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(key)
                        .key_type(KeyType::Hash)
                        .build()?,
                )
                .send()
                .await?;
        }

        // The device policy, as template.yaml's DevicePolicy (its ${iot:...} variables
        // are IoT's own, resolved per connection).
        let template: serde_norway::Value = serde_norway::from_str(&std::fs::read_to_string(
            crate::moto::workspace_root().join("template.yaml"),
        )?)?;
        let document = device_policy_document(&template);
        aws_sdk_iot::Client::new(&sdk)
            .create_policy()
            .policy_name(&names.device_policy)
            .policy_document(document)
            .send()
            .await?;

        // The naming key, as template.yaml's NamingKeySecret generates it.
        aws_sdk_secretsmanager::Client::new(&sdk)
            .create_secret()
            .name(&names.naming_key_secret)
            .secret_string(format!(
                "{:032x}{:032x}",
                fastrand::u128(..),
                fastrand::u128(..)
            ))
            .send()
            .await?;

        let ssm = aws_sdk_ssm::Client::new(&sdk);
        ssm.put_parameter()
            .name(&names.mappings_parameter)
            .value(BUILTIN_MAPPINGS)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .send()
            .await?;

        let sqs = aws_sdk_sqs::Client::new(&sdk);
        for q in [
            &names.stream_failures_queue,
            &names.ops_inbox,
            &names.files_dlq,
        ] {
            sqs.create_queue().queue_name(q).send().await?;
        }
        // The files queue, as in template.yaml: 5 receives, then the DLQ. Locally the
        // visibility timeout is short, so a retry comes seconds later, not minutes.
        use aws_sdk_sqs::types::QueueAttributeName as Q;
        let dlq_arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{}", names.files_dlq);
        let redrive =
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}).to_string();
        sqs.create_queue()
            .queue_name(&names.files_queue)
            .attributes(Q::VisibilityTimeout, FILES_VISIBILITY_SECONDS.to_string())
            .attributes(Q::RedrivePolicy, redrive)
            .send()
            .await?;
        use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
        let files_queue_arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{}", names.files_queue);
        s3.put_bucket_notification_configuration()
            .bucket(&names.staging_bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(
                        QueueConfiguration::builder()
                            .id("staging-to-files-queue")
                            .queue_arn(files_queue_arn)
                            .events(Event::from("s3:ObjectCreated:*"))
                            .build()?,
                    )
                    .build(),
            )
            .send()
            .await?;

        // The catalog queue: lake objects created or removed under readings/, as in template.yaml.
        let catalog_dlq_arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{}", names.catalog_dlq);
        sqs.create_queue()
            .queue_name(&names.catalog_dlq)
            .send()
            .await?;
        sqs.create_queue()
            .queue_name(&names.catalog_queue)
            .attributes(Q::VisibilityTimeout, FILES_VISIBILITY_SECONDS.to_string())
            .attributes(
                Q::RedrivePolicy,
                serde_json::json!({"deadLetterTargetArn": catalog_dlq_arn, "maxReceiveCount": 5})
                    .to_string(),
            )
            .send()
            .await?;
        {
            use aws_sdk_s3::types::{
                FilterRule, FilterRuleName, NotificationConfigurationFilter, S3KeyFilter,
            };
            let filter = NotificationConfigurationFilter::builder()
                .key(
                    S3KeyFilter::builder()
                        .filter_rules(
                            FilterRule::builder()
                                .name(FilterRuleName::Prefix)
                                .value(pulselake_domain::partition::READINGS_PREFIX)
                                .build(),
                        )
                        .build(),
                )
                .build();
            s3.put_bucket_notification_configuration()
                .bucket(&names.lake_bucket)
                .notification_configuration(
                    NotificationConfiguration::builder()
                        .queue_configurations(
                            QueueConfiguration::builder()
                                .id("lake-to-catalog-queue")
                                .queue_arn(format!(
                                    "arn:aws:sqs:{REGION}:{ACCOUNT}:{}",
                                    names.catalog_queue
                                ))
                                .events(Event::from("s3:ObjectCreated:*"))
                                .events(Event::from("s3:ObjectRemoved:*"))
                                .filter(filter)
                                .build()?,
                        )
                        .build(),
                )
                .send()
                .await?;
        }
        create_catalog(&aws_sdk_glue::Client::new(&sdk), &names).await?;

        let sns = aws_sdk_sns::Client::new(&sdk);
        let topic = sns.create_topic().name(&names.ops_topic).send().await?;
        sns.subscribe()
            .topic_arn(topic.topic_arn().unwrap_or_default())
            .protocol("sqs")
            .endpoint(format!(
                "arn:aws:sqs:{REGION}:{ACCOUNT}:{}",
                names.ops_inbox
            ))
            .attributes("RawMessageDelivery", "true")
            .send()
            .await?;

        // Alerting: the topic, a subscriber queue standing in for the pager, the rules.
        sqs.create_queue()
            .queue_name(&names.alerts_inbox)
            .send()
            .await?;
        let alerts = sns.create_topic().name(&names.alerts_topic).send().await?;
        sns.subscribe()
            .topic_arn(alerts.topic_arn().unwrap_or_default())
            .protocol("sqs")
            .endpoint(format!(
                "arn:aws:sqs:{REGION}:{ACCOUNT}:{}",
                names.alerts_inbox
            ))
            .attributes("RawMessageDelivery", "true")
            .send()
            .await?;
        ssm.put_parameter()
            .name(&names.alert_rules_parameter)
            .value(pulselake_domain::alerting::DEFAULT_RULES)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .send()
            .await?;
        crate::partner_stack::provision(&sdk, &names).await?;
        Stack::connect(sdk, names).await
    }

    /// Writes device records into the registry table.
    pub async fn register_devices(&self, records: &[DeviceRecord]) -> Result<()> {
        use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
        for chunk in records.chunks(25) {
            let mut writes = Vec::with_capacity(chunk.len());
            for r in chunk {
                let put = PutRequest::builder()
                    .set_item(Some(device_item(r)))
                    .build()?;
                writes.push(WriteRequest::builder().put_request(put).build());
            }
            let mut pending = Some(std::collections::HashMap::from([(
                self.names.registry_table.clone(),
                writes,
            )]));
            while let Some(items) = pending.take().filter(|m| m.values().any(|v| !v.is_empty())) {
                let out = self
                    .dynamodb
                    .batch_write_item()
                    .set_request_items(Some(items))
                    .send()
                    .await?;
                pending = out.unprocessed_items().cloned();
            }
        }
        Ok(())
    }

    /// Maps legacy patient keys (`seed:P1`) to subject ids.
    pub async fn register_aliases(&self, aliases: &[(&str, &str)]) -> Result<()> {
        use aws_sdk_dynamodb::types::AttributeValue;
        for (alias, subject) in aliases {
            self.dynamodb
                .put_item()
                .table_name(&self.names.alias_table)
                .item("alias", AttributeValue::S((*alias).to_owned()))
                .item("subject_id", AttributeValue::S((*subject).to_owned()))
                .send()
                .await?;
        }
        Ok(())
    }

    /// Environment a file-ingest process needs to run against this stack.
    pub fn file_ingest_config(&self) -> file_ingest::Config {
        let n = &self.names;
        file_ingest::Config {
            lake_bucket: n.lake_bucket.clone(),
            quarantine_bucket: n.quarantine_bucket.clone(),
            processed_bucket: n.processed_bucket.clone(),
            dedup_table: n.dedup_table.clone(),
            registry_table: n.registry_table.clone(),
            alias_table: n.alias_table.clone(),
            ops_topic_arn: self.ops_topic_arn.clone(),
            mappings_parameter: Some(n.mappings_parameter.clone()),
            dedup_ttl: std::time::Duration::from_secs(400 * 86_400),
            naming_key_secret: n.naming_key_secret.clone(),
            retention_years: local_retention_years(),
        }
    }

    /// vitals-alert's configuration on this stack.
    pub fn vitals_alert_config(&self) -> vitals_alert::Config {
        let n = &self.names;
        vitals_alert::Config {
            registry_table: n.registry_table.clone(),
            state_table: n.alert_state_table.clone(),
            alerts_topic_arn: self.alerts_topic_arn.clone(),
            heartbeat_table: n.heartbeat_table.clone(),
            rules_parameter: Some(n.alert_rules_parameter.clone()),
            mappings_parameter: Some(n.mappings_parameter.clone()),
        }
    }

    /// device-watch's configuration on this stack.
    pub fn device_watch_config(&self) -> device_watch::Config {
        let n = &self.names;
        device_watch::Config {
            registry_table: n.registry_table.clone(),
            heartbeat_table: n.heartbeat_table.clone(),
            alerts_topic_arn: self.alerts_topic_arn.clone(),
            rules_parameter: Some(n.alert_rules_parameter.clone()),
        }
    }

    /// Replaces the alert rules document (a function built afterwards reads it).
    pub async fn set_alert_rules(&self, doc: &str) -> Result<()> {
        self.ssm
            .put_parameter()
            .name(&self.names.alert_rules_parameter)
            .value(doc)
            .overwrite(true)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .send()
            .await?;
        Ok(())
    }

    /// catalog-sync's configuration on this stack.
    pub fn catalog_sync_config(&self) -> catalog_sync::Config {
        catalog_sync::Config {
            lake_bucket: self.names.lake_bucket.clone(),
            database: self.names.glue_database.clone(),
            table: self.names.glue_table.clone(),
        }
    }

    /// Environment a stream-ingest process needs to run against this stack.
    pub fn stream_ingest_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "DELIVERY_STREAM_NAME".into(),
                self.names.delivery_stream.clone(),
            ),
            (
                "QUARANTINE_BUCKET".into(),
                self.names.quarantine_bucket.clone(),
            ),
            ("REGISTRY_TABLE".into(), self.names.registry_table.clone()),
            (
                "DEVICE_MAPPINGS_PARAMETER".into(),
                self.names.mappings_parameter.clone(),
            ),
        ]
    }
}

/// template.yaml's device policy as IoT receives it: `!Sub` applied for this account
/// and region (`${!x}` is the literal `${x}`).
pub fn device_policy_document(template: &serde_norway::Value) -> String {
    let doc = &template["Resources"]["DevicePolicy"]["Properties"]["PolicyDocument"];
    let mut json = serde_json::to_value(doc).unwrap_or_default();
    fn substitute(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::String(s)) = m.get("!Sub").cloned() {
                    *v = serde_json::Value::String(
                        s.replace("${AWS::Partition}", "aws")
                            .replace("${AWS::Region}", REGION)
                            .replace("${AWS::AccountId}", ACCOUNT)
                            .replace("${!", "${"),
                    );
                } else {
                    m.values_mut().for_each(substitute);
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(substitute),
            _ => {}
        }
    }
    substitute(&mut json);
    json.to_string()
}

/// The Glue database and readings table exactly as `template.yaml` declares them
/// (columns, partition keys, formats, SerDe), so the local catalog cannot drift from
/// the deployed one.
async fn create_catalog(glue: &aws_sdk_glue::Client, names: &Names) -> Result<()> {
    use aws_sdk_glue::types::{Column, DatabaseInput, SerDeInfo, StorageDescriptor, TableInput};
    let text = std::fs::read_to_string(crate::moto::workspace_root().join("template.yaml"))?;
    let template: serde_norway::Value = serde_norway::from_str(&text)?;
    let table = &template["Resources"]["ReadingsTable"]["Properties"]["TableInput"];
    let sd = &table["StorageDescriptor"];
    let str_of = |v: &serde_norway::Value| v.as_str().unwrap_or_default().to_owned();
    let columns = |v: &serde_norway::Value| -> Result<Vec<Column>> {
        v.as_sequence()
            .ok_or("template.yaml: ReadingsTable columns are not a list")?
            .iter()
            .map(|c| {
                Ok(Column::builder()
                    .name(str_of(&c["Name"]))
                    .r#type(str_of(&c["Type"]))
                    .build()?)
            })
            .collect()
    };
    glue.create_database()
        .database_input(
            DatabaseInput::builder()
                .name(&names.glue_database)
                .build()?,
        )
        .send()
        .await?;
    let mut input = TableInput::builder()
        .name(&names.glue_table)
        .table_type(str_of(&table["TableType"]))
        .set_partition_keys(Some(columns(&table["PartitionKeys"])?))
        .storage_descriptor(
            StorageDescriptor::builder()
                .location(format!(
                    "s3://{}/{}",
                    names.lake_bucket,
                    pulselake_domain::partition::READINGS_PREFIX
                ))
                .input_format(str_of(&sd["InputFormat"]))
                .output_format(str_of(&sd["OutputFormat"]))
                .serde_info(
                    SerDeInfo::builder()
                        .serialization_library(str_of(&sd["SerdeInfo"]["SerializationLibrary"]))
                        .build(),
                )
                .set_columns(Some(columns(&sd["Columns"])?))
                .build(),
        );
    for (k, v) in table["Parameters"].as_mapping().into_iter().flatten() {
        input = input.parameters(str_of(k), str_of(v));
    }
    glue.create_table()
        .database_name(&names.glue_database)
        .table_input(input.build()?)
        .send()
        .await?;
    Ok(())
}

/// The local stack keeps enough calendar years for the real 2020 vendor sample (a
/// deployment keeps `LakeRetentionYears`, at least 3; file-ingest's tests check the 3).
pub fn local_retention_years() -> u32 {
    use pulselake_domain::time::Date;
    let sample = Date::new(2020, 10, 12).unwrap_or(Date::from_epoch_ms(0));
    pulselake_domain::retention::years_covering(sample, Date::from_epoch_ms(crate::invoke_now_ms()))
}
