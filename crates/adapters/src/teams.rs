//! Team records: one item per team environment in the teams table, with its policy, the
//! filter compiled from it (what Lake Formation was asked to enforce), its status and a
//! version for read-modify-write. The name is claimed by a conditional put, so two teams
//! cannot be added under one name.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;

use aws_sdk_dynamodb::types::AttributeValue;
use pulselake_domain::team::{TeamPolicy, TeamStatus};

use crate::error::AwsError;

/// One team environment as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Team {
    pub team: String,
    pub status: TeamStatus,
    pub policy: TeamPolicy,
    /// The row filter and columns in force (as compiled when last applied).
    pub row_filter: String,
    pub columns: Vec<String>,
    pub updated_at: i64,
    /// 0 for a team not yet stored.
    pub version: u64,
}

/// Port: the teams table.
pub trait Teams: Send + Sync {
    fn get(&self, team: &str) -> impl Future<Output = Result<Option<Team>, AwsError>> + Send;
    /// Writes `team` over the version read (version 0: only if no such team exists);
    /// `false` when another change came first.
    fn put(&self, team: &Team) -> impl Future<Output = Result<bool, AwsError>> + Send;
    fn delete(&self, team: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn all(&self) -> impl Future<Output = Result<Vec<Team>, AwsError>> + Send;
}

pub struct DynamoTeams {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoTeams {
    pub fn from_config(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> DynamoTeams {
        DynamoTeams {
            client: aws_sdk_dynamodb::Client::new(sdk),
            table: table.into(),
        }
    }
}

fn decode(item: &HashMap<String, AttributeValue>) -> Option<Team> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let number = |k: &str| -> Option<i64> {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
    };
    Some(Team {
        team: text("team")?,
        status: serde_json::from_value(serde_json::Value::String(text("status")?)).ok()?,
        policy: serde_json::from_str(&text("policy")?).ok()?,
        row_filter: text("row_filter")?,
        columns: item.get("columns")?.as_ss().ok()?.clone(),
        updated_at: number("updated_at")?,
        version: u64::try_from(number("version")?).ok()?,
    })
}

fn status_name(s: TeamStatus) -> &'static str {
    match s {
        TeamStatus::Active => "active",
        TeamStatus::Suspended => "suspended",
    }
}

impl Teams for DynamoTeams {
    async fn get(&self, team: &str) -> Result<Option<Team>, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("team", AttributeValue::S(team.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
        Ok(out.item().and_then(decode))
    }

    async fn put(&self, t: &Team) -> Result<bool, AwsError> {
        let policy = serde_json::to_string(&t.policy)
            .map_err(|e| AwsError::permanent("dynamodb:PutItem", e.to_string()))?;
        if t.columns.is_empty() {
            return Err(AwsError::permanent(
                "dynamodb:PutItem",
                "a team record needs its columns",
            ));
        }
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("team", AttributeValue::S(t.team.clone()))
            .item("status", AttributeValue::S(status_name(t.status).into()))
            .item("policy", AttributeValue::S(policy))
            .item("row_filter", AttributeValue::S(t.row_filter.clone()))
            .item("columns", AttributeValue::Ss(t.columns.clone()))
            .item("updated_at", AttributeValue::N(t.updated_at.to_string()))
            .item("version", AttributeValue::N((t.version + 1).to_string()));
        let put = if t.version == 0 {
            put.condition_expression("attribute_not_exists(team)")
        } else {
            put.condition_expression("version = :read")
                .expression_attribute_values(":read", AttributeValue::N(t.version.to_string()))
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if crate::aws::is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(AwsError::from_sdk("dynamodb:PutItem", e)),
        }
    }

    async fn delete(&self, team: &str) -> Result<(), AwsError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("team", AttributeValue::S(team.to_owned()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:DeleteItem", e))?;
        Ok(())
    }

    async fn all(&self) -> Result<Vec<Team>, AwsError> {
        let items = crate::aws::scan_items(self.client.scan().table_name(&self.table)).await?;
        let mut out: Vec<Team> = items.iter().filter_map(decode).collect();
        out.sort_by(|a, b| a.team.cmp(&b.team));
        Ok(out)
    }
}

/// Teams in memory: for unit tests.
#[derive(Default)]
pub struct MemoryTeams(pub Mutex<BTreeMap<String, Team>>);

impl Teams for MemoryTeams {
    async fn get(&self, team: &str) -> Result<Option<Team>, AwsError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(team)
            .cloned())
    }

    async fn put(&self, t: &Team) -> Result<bool, AwsError> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let current = all.get(&t.team).map_or(0, |x| x.version);
        if current != t.version {
            return Ok(false);
        }
        all.insert(
            t.team.clone(),
            Team {
                version: t.version + 1,
                ..t.clone()
            },
        );
        Ok(true)
    }

    async fn delete(&self, team: &str) -> Result<(), AwsError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(team);
        Ok(())
    }

    async fn all(&self) -> Result<Vec<Team>, AwsError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect())
    }
}
