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
}

impl Stack {
    /// Clients for an already provisioned stack.
    pub async fn connect(sdk: SdkConfig, names: Names) -> Result<Stack> {
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let url = sqs
            .get_queue_url()
            .queue_name(&names.stream_failures_queue)
            .send()
            .await?;
        Ok(Stack {
            s3: pulselake_adapters::s3_client(&sdk),
            kinesis: aws_sdk_kinesis::Client::new(&sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            ssm: aws_sdk_ssm::Client::new(&sdk),
            firehose: aws_sdk_firehose::Client::new(&sdk),
            stream_arn: format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{}", names.stream),
            stream_failures_queue_url: url.queue_url().unwrap_or_default().to_owned(),
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
        dynamodb
            .create_table()
            .table_name(&names.registry_table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("device_id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("device_id")
                    .key_type(KeyType::Hash)
                    .build()?,
            )
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
        sqs.create_queue()
            .queue_name(&names.stream_failures_queue)
            .send()
            .await?;
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
