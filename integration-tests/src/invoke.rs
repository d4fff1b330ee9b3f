//! Invoking a function the way Lambda does: a JSON event in, a JSON response or an
//! error out. In process (the function's own handler, real SDK clients against the
//! local stack) or through the Lambda Runtime API of `cargo lambda watch` (the real binary).

use std::future::Future;
use std::time::Duration;

use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use serde_json::Value;

/// A function invocation error, as Lambda reports it (`errorType`, `errorMessage`).
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionError {
    pub error_type: String,
    pub message: String,
}

impl std::fmt::Display for FunctionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

pub trait Invoker: Send + Sync {
    fn invoke(&self, event: Value) -> impl Future<Output = Result<Value, FunctionError>> + Send;
}

/// A Lambda context with the given time budget, as the runtime would build it.
pub fn context(timeout: Duration) -> Context {
    let mut ctx = Context::default();
    ctx.deadline = (stream_ingest::now_ms() + timeout.as_millis() as i64) as u64;
    ctx.request_id = format!("local-{:016x}", fastrand::u64(..));
    ctx
}

fn deserialize_error(e: serde_json::Error) -> FunctionError {
    FunctionError {
        error_type: "Runtime.DeserializationError".into(),
        message: e.to_string(),
    }
}

/// Runs a function's handler as the runtime does: the event deserialized, a context with
/// the time budget, the response serialized or the error reported as Lambda reports it.
async fn in_process<E, R, Err, Fut>(
    event: Value,
    timeout: Duration,
    metrics_scope: u64,
    handler: impl FnOnce(LambdaEvent<E>) -> Fut,
) -> Result<Value, FunctionError>
where
    E: serde::de::DeserializeOwned,
    R: serde::Serialize,
    Err: Into<Diagnostic>,
    Fut: Future<Output = Result<R, Err>>,
{
    let payload = serde_json::from_value(event).map_err(deserialize_error)?;
    let event = LambdaEvent::new(payload, context(timeout));
    match crate::metrics::scoped(metrics_scope, handler(event)).await {
        Ok(resp) => Ok(serde_json::to_value(resp).unwrap_or(Value::Null)),
        Err(e) => {
            let d: Diagnostic = e.into();
            Err(FunctionError {
                error_type: d.error_type,
                message: d.error_message,
            })
        }
    }
}

/// stream-ingest, in process.
pub struct StreamIngestFn {
    pub ingest: stream_ingest::AwsIngest,
    pub timeout: Duration,
    /// Where its metrics are counted (see [`crate::metrics`]).
    pub metrics_scope: u64,
}

impl Invoker for StreamIngestFn {
    async fn invoke(&self, event: Value) -> Result<Value, FunctionError> {
        in_process(event, self.timeout, self.metrics_scope, |e| {
            stream_ingest::function_handler(e, &self.ingest)
        })
        .await
    }
}

/// stream-ingest on the Kafka trigger (legacy-stream-ingest), in process.
pub struct LegacyStreamIngestFn(pub StreamIngestFn);

impl Invoker for LegacyStreamIngestFn {
    async fn invoke(&self, event: Value) -> Result<Value, FunctionError> {
        let f = &self.0;
        in_process(event, f.timeout, f.metrics_scope, |e| {
            stream_ingest::kafka_handler(e, &f.ingest)
        })
        .await
    }
}

/// file-ingest, in process.
pub struct FileIngestFn {
    pub ingest: file_ingest::AwsFileIngest,
    pub timeout: Duration,
    /// Where its metrics are counted (see [`crate::metrics`]).
    pub metrics_scope: u64,
}

impl Invoker for FileIngestFn {
    async fn invoke(&self, event: Value) -> Result<Value, FunctionError> {
        in_process(event, self.timeout, self.metrics_scope, |e| {
            file_ingest::function_handler(e, &self.ingest)
        })
        .await
    }
}

/// catalog-sync, in process.
pub struct CatalogSyncFn {
    pub sync: catalog_sync::AwsCatalogSync,
    pub timeout: Duration,
    /// Where its metrics are counted (see [`crate::metrics`]).
    pub metrics_scope: u64,
}

impl Invoker for CatalogSyncFn {
    async fn invoke(&self, event: Value) -> Result<Value, FunctionError> {
        in_process(event, self.timeout, self.metrics_scope, |e| {
            catalog_sync::function_handler(e, &self.sync)
        })
        .await
    }
}

/// vitals-alert, in process.
pub struct VitalsAlertFn {
    pub alert: vitals_alert::AwsVitalsAlert,
    pub timeout: Duration,
    /// Where its metrics are counted (see [`crate::metrics`]).
    pub metrics_scope: u64,
}

impl Invoker for VitalsAlertFn {
    async fn invoke(&self, event: Value) -> Result<Value, FunctionError> {
        in_process(event, self.timeout, self.metrics_scope, |e| {
            vitals_alert::function_handler(e, &self.alert)
        })
        .await
    }
}

/// A function served by `cargo lambda watch`, invoked over its HTTP invoke API.
pub struct RuntimeApiFn {
    pub base_url: String,
    pub function: String,
}

impl Invoker for RuntimeApiFn {
    async fn invoke(&self, event: Value) -> Result<Value, FunctionError> {
        let url = format!(
            "{}/2015-03-31/functions/{}/invocations",
            self.base_url, self.function
        );
        let transport = |e: String| FunctionError {
            error_type: "Local.InvokeFailed".into(),
            message: e,
        };
        let (status, headers, body) = crate::http::post_json(&url, &event)
            .await
            .map_err(|e| transport(e.to_string()))?;
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status >= 400
            || headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("x-amz-function-error"))
        {
            return Err(FunctionError {
                error_type: value["errorType"]
                    .as_str()
                    .unwrap_or("Unhandled")
                    .to_owned(),
                message: value["errorMessage"].as_str().map_or_else(
                    || String::from_utf8_lossy(&body).into_owned(),
                    str::to_owned,
                ),
            });
        }
        Ok(value)
    }
}

/// partner-api, in process (behind [`crate::api_gateway`]).
pub struct PartnerApiFn {
    pub api: partner_api::AwsPartnerApi,
    pub timeout: Duration,
    /// Where its metrics are counted (see [`crate::metrics`]).
    pub metrics_scope: u64,
}

impl Invoker for PartnerApiFn {
    async fn invoke(&self, event: Value) -> Result<Value, FunctionError> {
        in_process(event, self.timeout, self.metrics_scope, |e| {
            partner_api::function_handler(e, &self.api)
        })
        .await
    }
}

/// export-worker, in process (behind the export queue's [`crate::sqs_esm`] mapping).
pub struct ExportWorkerFn {
    pub worker: export_worker::AwsExportWorker,
    pub timeout: Duration,
    /// Where its metrics are counted (see [`crate::metrics`]).
    pub metrics_scope: u64,
}

impl Invoker for ExportWorkerFn {
    async fn invoke(&self, event: Value) -> Result<Value, FunctionError> {
        in_process(event, self.timeout, self.metrics_scope, |e| {
            export_worker::function_handler(e, &self.worker)
        })
        .await
    }
}

/// erasure, in process (behind the erasure queue's [`crate::sqs_esm`] mapping).
pub struct ErasureFn {
    pub job: erasure::AwsErasure,
    pub timeout: Duration,
    /// Where its metrics are counted (see [`crate::metrics`]).
    pub metrics_scope: u64,
}

impl Invoker for ErasureFn {
    async fn invoke(&self, event: Value) -> Result<Value, FunctionError> {
        in_process(event, self.timeout, self.metrics_scope, |e| {
            erasure::function_handler(e, &self.job)
        })
        .await
    }
}
