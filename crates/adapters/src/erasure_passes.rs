//! Erasure passes fanned out over the lake: one item per pass (its requests, how many
//! partitions it has and how many are done), one per finished partition (that unit's
//! evidence, the first attempt that finished it wins), and a pointer to the pass that
//! runs (one at a time; a pass that stops making progress is replaced after a day).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use crate::aws::is_conditional_failure;
use crate::error::AwsError;

/// One pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasurePass {
    pub id: String,
    /// The requests it processes (their references).
    pub requests: Vec<String>,
    /// Partitions (units) in the pass, and those finished.
    pub total: u32,
    pub done: u32,
    pub started_at: i64,
    /// The pass's evidence, once every unit is done and the evidence is written.
    pub evidence: Option<String>,
}

/// Port: the passes table.
pub trait ErasurePasses: Send + Sync {
    /// Records a new pass and makes it the running one, unless another runs that
    /// started at or after `stale_before`: `Ok(false)` then (nothing recorded).
    fn start(
        &self,
        pass: &ErasurePass,
        stale_before: i64,
        expires_at: i64,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
    fn get(&self, id: &str) -> impl Future<Output = Result<Option<ErasurePass>, AwsError>> + Send;
    /// Records a unit's evidence (kept if one is there already) and counts the unit
    /// once; the pass afterwards.
    fn finish_unit(
        &self,
        id: &str,
        unit: &str,
        evidence: &str,
        expires_at: i64,
    ) -> impl Future<Output = Result<Option<ErasurePass>, AwsError>> + Send;
    /// Every finished unit's evidence.
    fn units(&self, id: &str) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
    /// The pass the pointer names (the running one, or the last): whether it finished.
    fn latest(&self) -> impl Future<Output = Result<Option<ErasurePass>, AwsError>> + Send;
    /// Ends the pass with its evidence: the next scheduled run may start another.
    fn finish(&self, id: &str, evidence: &str)
    -> impl Future<Output = Result<(), AwsError>> + Send;
}

pub struct DynamoErasurePasses {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoErasurePasses {
    pub fn from_config(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        DynamoErasurePasses {
            client: aws_sdk_dynamodb::Client::new(sdk),
            table: table.into(),
        }
    }
}

/// The pass item's sort key, and the pointer's partition key.
const PASS: &str = "#pass";
const RUNNING: &str = "#running";

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn decode(item: &std::collections::HashMap<String, AttributeValue>) -> Option<ErasurePass> {
    let num = |k: &str| -> Option<i64> { item.get(k)?.as_n().ok()?.parse().ok() };
    Some(ErasurePass {
        id: item.get("pass")?.as_s().ok()?.clone(),
        requests: item
            .get("requests")
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|a| a.as_s().ok().cloned()).collect())
            .unwrap_or_default(),
        total: num("total")? as u32,
        done: num("done").unwrap_or(0) as u32,
        started_at: num("started_at")?,
        evidence: item.get("evidence").and_then(|v| v.as_s().ok()).cloned(),
    })
}

impl ErasurePasses for DynamoErasurePasses {
    async fn start(
        &self,
        pass: &ErasurePass,
        stale_before: i64,
        expires_at: i64,
    ) -> Result<bool, AwsError> {
        // The pass first, then the pointer: a pass that never became the running one is
        // harmless (it expires); a pointer never names a pass that is not there.
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pass", s(&pass.id))
            .item("unit", s(PASS))
            .item(
                "requests",
                AttributeValue::L(pass.requests.iter().map(|r| s(r)).collect()),
            )
            .item("total", n(i64::from(pass.total)))
            .item("done", n(0))
            .item("started_at", n(pass.started_at))
            .item("expires_at", n(expires_at))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:PutItem", e))?;
        let pointed = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pass", s(RUNNING))
            .item("unit", s(PASS))
            .item("id", s(&pass.id))
            .item("started_at", n(pass.started_at))
            .condition_expression(
                "attribute_not_exists(#p) OR finished = :yes OR started_at < :stale",
            )
            .expression_attribute_names("#p", "pass")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":stale", n(stale_before))
            .send()
            .await;
        match pointed {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(AwsError::from_sdk("dynamodb:PutItem", e)),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<ErasurePass>, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pass", s(id))
            .key("unit", s(PASS))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
        Ok(out.item().and_then(decode))
    }

    async fn finish_unit(
        &self,
        id: &str,
        unit: &str,
        evidence: &str,
        expires_at: i64,
    ) -> Result<Option<ErasurePass>, AwsError> {
        let recorded = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pass", s(id))
            .item("unit", s(unit))
            .item("evidence", s(evidence))
            .item("expires_at", n(expires_at))
            .condition_expression("attribute_not_exists(#p)")
            .expression_attribute_names("#p", "pass")
            .send()
            .await;
        match recorded {
            Ok(_) => {}
            Err(e) if is_conditional_failure(&e) => {}
            Err(e) => return Err(AwsError::from_sdk("dynamodb:PutItem", e)),
        }
        let counted = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pass", s(id))
            .key("unit", s(PASS))
            .update_expression("ADD done :one, done_units :u")
            .condition_expression("attribute_exists(#p) AND NOT contains(done_units, :name)")
            .expression_attribute_names("#p", "pass")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":u", AttributeValue::Ss(vec![unit.to_owned()]))
            .expression_attribute_values(":name", s(unit))
            .send()
            .await;
        match counted {
            Ok(_) => {}
            // Counted before (a redelivery), or the pass is gone: the pass says which.
            Err(e) if is_conditional_failure(&e) => {}
            Err(e) => return Err(AwsError::from_sdk("dynamodb:UpdateItem", e)),
        }
        self.get(id).await
    }

    async fn units(&self, id: &str) -> Result<Vec<String>, AwsError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#p = :id")
                .expression_attribute_names("#p", "pass")
                .expression_attribute_values(":id", s(id))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("dynamodb:Query", e))?;
            out.extend(page.items().iter().filter_map(|item| {
                let unit = item.get("unit")?.as_s().ok()?;
                (unit != PASS).then(|| item.get("evidence")?.as_s().ok().cloned())?
            }));
            match page.last_evaluated_key() {
                Some(k) => start = Some(k.clone()),
                None => return Ok(out),
            }
        }
    }

    async fn latest(&self) -> Result<Option<ErasurePass>, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pass", s(RUNNING))
            .key("unit", s(PASS))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
        match out.item().and_then(|i| i.get("id")?.as_s().ok().cloned()) {
            Some(id) => self.get(&id).await,
            None => Ok(None),
        }
    }

    async fn finish(&self, id: &str, evidence: &str) -> Result<(), AwsError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pass", s(id))
            .key("unit", s(PASS))
            .update_expression("SET evidence = :e")
            .expression_attribute_values(":e", s(evidence))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:UpdateItem", e))?;
        let freed = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pass", s(RUNNING))
            .key("unit", s(PASS))
            .update_expression("SET finished = :yes")
            .condition_expression("id = :id")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":id", s(id))
            .send()
            .await;
        match freed {
            // Another pass runs already (this one was stale): leave it be.
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Ok(()),
            Err(e) => Err(AwsError::from_sdk("dynamodb:UpdateItem", e)),
        }
    }
}

/// In memory, for unit tests.
#[derive(Default)]
pub struct MemoryErasurePasses {
    state: Mutex<MemoryPassState>,
}

#[derive(Default)]
struct MemoryPassState {
    passes: BTreeMap<String, ErasurePass>,
    units: BTreeMap<String, BTreeMap<String, String>>,
    /// The running pass and when it started; `None` once finished.
    running: Option<(String, i64)>,
    latest: Option<String>,
}

impl ErasurePasses for MemoryErasurePasses {
    async fn start(&self, pass: &ErasurePass, stale_before: i64, _: i64) -> Result<bool, AwsError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st
            .running
            .as_ref()
            .is_some_and(|(_, at)| *at >= stale_before)
        {
            return Ok(false);
        }
        st.passes.insert(pass.id.clone(), pass.clone());
        st.running = Some((pass.id.clone(), pass.started_at));
        st.latest = Some(pass.id.clone());
        Ok(true)
    }

    async fn get(&self, id: &str) -> Result<Option<ErasurePass>, AwsError> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Ok(st.passes.get(id).cloned())
    }

    async fn finish_unit(
        &self,
        id: &str,
        unit: &str,
        evidence: &str,
        _: i64,
    ) -> Result<Option<ErasurePass>, AwsError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let units = st.units.entry(id.to_owned()).or_default();
        let first = !units.contains_key(unit);
        units
            .entry(unit.to_owned())
            .or_insert_with(|| evidence.to_owned());
        if let Some(p) = st.passes.get_mut(id) {
            p.done += u32::from(first);
        }
        Ok(st.passes.get(id).cloned())
    }

    async fn units(&self, id: &str) -> Result<Vec<String>, AwsError> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Ok(st
            .units
            .get(id)
            .map(|u| u.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn latest(&self) -> Result<Option<ErasurePass>, AwsError> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Ok(st.latest.as_ref().and_then(|id| st.passes.get(id)).cloned())
    }

    async fn finish(&self, id: &str, evidence: &str) -> Result<(), AwsError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = st.passes.get_mut(id) {
            p.evidence = Some(evidence.to_owned());
        }
        if st.running.as_ref().is_some_and(|(r, _)| r == id) {
            st.running = None;
        }
        Ok(())
    }
}
