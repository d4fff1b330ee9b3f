//! Notifications to operators (the ops SNS topic) and subject aliases.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::error::AwsError;

/// Port: tells operators something needs them. Messages carry references (ids, hashes,
/// counts, reasons), never patient data.
pub trait Notifier: Send + Sync {
    fn notify(
        &self,
        subject: &str,
        message: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

pub struct SnsTopic {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsTopic {
    pub fn from_config(sdk: &aws_config::SdkConfig, topic_arn: impl Into<String>) -> SnsTopic {
        SnsTopic {
            client: aws_sdk_sns::Client::new(sdk),
            topic_arn: topic_arn.into(),
        }
    }
}

impl Notifier for SnsTopic {
    async fn notify(&self, subject: &str, message: &str) -> Result<(), AwsError> {
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message(message)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sns:Publish", e))?;
        Ok(())
    }
}

/// Keeps notifications in memory: for unit tests.
#[derive(Default)]
pub struct MemoryNotifier {
    pub sent: Mutex<Vec<(String, String)>>,
}

impl Notifier for MemoryNotifier {
    async fn notify(&self, subject: &str, message: &str) -> Result<(), AwsError> {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((subject.into(), message.into()));
        Ok(())
    }
}

/// Port: maps a legacy system's patient key (`<system>:<patient>`) to the subject id,
/// the pseudonymous key the lake uses. Kept in its own table, out of the lake.
pub trait SubjectAliases: Send + Sync {
    fn resolve(&self, alias: &str)
    -> impl Future<Output = Result<Option<String>, AwsError>> + Send;
}

pub struct DynamoAliases {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoAliases {
    pub fn from_config(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> DynamoAliases {
        DynamoAliases {
            client: aws_sdk_dynamodb::Client::new(sdk),
            table: table.into(),
        }
    }
}

impl SubjectAliases for DynamoAliases {
    async fn resolve(&self, alias: &str) -> Result<Option<String>, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("alias", AttributeValue::S(alias.to_owned()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
        Ok(out
            .item()
            .and_then(|i| i.get("subject_id"))
            .and_then(|v| v.as_s().ok())
            .cloned())
    }
}

/// Port: removing every alias of a subject (an erasure request: files naming the
/// legacy key can no longer be attributed to the subject).
pub trait AliasAdmin: Send + Sync {
    /// The aliases naming a subject.
    fn aliases_of(
        &self,
        subject: &str,
    ) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
    /// Returns the aliases removed.
    fn remove_subject(
        &self,
        subject: &str,
    ) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
}

impl AliasAdmin for DynamoAliases {
    async fn remove_subject(&self, subject: &str) -> Result<Vec<String>, AwsError> {
        let aliases = self.aliases_of(subject).await?;
        for alias in &aliases {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("alias", AttributeValue::S(alias.clone()))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("dynamodb:DeleteItem", e))?;
        }
        Ok(aliases)
    }

    async fn aliases_of(&self, subject: &str) -> Result<Vec<String>, AwsError> {
        let scan = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("subject_id = :s")
            .expression_attribute_values(":s", AttributeValue::S(subject.to_owned()));
        let mut aliases: Vec<String> = crate::aws::scan_items(scan)
            .await?
            .iter()
            .filter_map(|i| i.get("alias").and_then(|v| v.as_s().ok()).cloned())
            .collect();
        aliases.sort();
        Ok(aliases)
    }
}

#[derive(Default)]
pub struct MemoryAliases(pub HashMap<String, String>);

impl AliasAdmin for std::sync::Mutex<MemoryAliases> {
    async fn aliases_of(&self, subject: &str) -> Result<Vec<String>, AwsError> {
        let m = self.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<String> =
            m.0.iter()
                .filter(|(_, s)| *s == subject)
                .map(|(a, _)| a.clone())
                .collect();
        out.sort();
        Ok(out)
    }

    async fn remove_subject(&self, subject: &str) -> Result<Vec<String>, AwsError> {
        let mut m = self.lock().unwrap_or_else(|p| p.into_inner());
        let mut removed: Vec<String> =
            m.0.iter()
                .filter(|(_, s)| *s == subject)
                .map(|(a, _)| a.clone())
                .collect();
        removed.sort();
        m.0.retain(|_, s| s != subject);
        Ok(removed)
    }
}

impl SubjectAliases for MemoryAliases {
    async fn resolve(&self, alias: &str) -> Result<Option<String>, AwsError> {
        Ok(self.0.get(alias).cloned())
    }
}
