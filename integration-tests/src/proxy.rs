//! A fault-injecting HTTP proxy in front of moto. Everything passes through untouched
//! except Firehose `PutRecordBatch`, which it can
//! - throttle: answer a whole call with HTTP 500 `ServiceUnavailableException`, and
//! - fail records: forward only some records to moto and answer HTTP 200 with
//!   per-record `ErrorCode`s for the others, exactly as Firehose reports partial failure.
//!
//! So the real SDK client and the function's retry logic meet the failures Firehose
//! produces, and moto's bucket shows what truly got through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::Result;

/// What to inject.
#[derive(Debug, Clone, Copy)]
pub struct FaultPlan {
    /// Probability that a record in a PutRecordBatch call is refused.
    pub record_failure_rate: f64,
    /// Throttle every n-th PutRecordBatch call (0: never).
    pub throttle_every: usize,
    pub seed: u64,
}

/// What was injected and forwarded.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub put_record_batch_calls: AtomicUsize,
    pub throttled_calls: AtomicUsize,
    pub records_refused: AtomicUsize,
    pub records_forwarded: AtomicUsize,
}

pub struct FaultProxy {
    pub endpoint: String,
    pub stats: Arc<ProxyStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct State {
    upstream: String,
    plan: FaultPlan,
    rng: Mutex<fastrand::Rng>,
    stats: Arc<ProxyStats>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl FaultProxy {
    /// Starts the proxy on a free loopback port in front of `upstream` (moto's endpoint).
    pub async fn start(upstream: &str, plan: FaultPlan) -> Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let stats = Arc::new(ProxyStats::default());
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_owned(),
            plan,
            rng: Mutex::new(fastrand::Rng::with_seed(plan.seed)),
            stats: stats.clone(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        });
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(FaultProxy {
            endpoint: format!("http://{addr}"),
            stats,
            task,
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> std::result::Result<Response<Full<Bytes>>, BoxError> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if target == "Firehose_20150804.PutRecordBatch" {
        return put_record_batch(&state, parts, body).await;
    }
    forward(&state, parts, body).await
}

async fn forward(
    state: &State,
    parts: http::request::Parts,
    body: Bytes,
) -> std::result::Result<Response<Full<Bytes>>, BoxError> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut up = Request::builder()
        .method(parts.method.clone())
        .uri(format!("{}{path}", state.upstream));
    for (k, v) in &parts.headers {
        if !matches!(
            k.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection"
        ) {
            up = up.header(k, v);
        }
    }
    let resp = state.client.request(up.body(Full::new(body))?).await?;
    let (rparts, rbody) = resp.into_parts();
    let rbody = rbody.collect().await?.to_bytes();
    let mut out = Response::builder().status(rparts.status);
    for (k, v) in &rparts.headers {
        if !matches!(
            k.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            out = out.header(k, v);
        }
    }
    Ok(out.body(Full::new(rbody))?)
}

fn json_response(status: u16, v: &Value) -> std::result::Result<Response<Full<Bytes>>, BoxError> {
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(Bytes::from(v.to_string())))?)
}

async fn put_record_batch(
    state: &State,
    parts: http::request::Parts,
    body: Bytes,
) -> std::result::Result<Response<Full<Bytes>>, BoxError> {
    let n = state
        .stats
        .put_record_batch_calls
        .fetch_add(1, Ordering::Relaxed)
        + 1;
    if state.plan.throttle_every > 0 && n.is_multiple_of(state.plan.throttle_every) {
        state.stats.throttled_calls.fetch_add(1, Ordering::Relaxed);
        return json_response(
            500,
            &json!({"__type": "ServiceUnavailableException", "message": "Slow down."}),
        );
    }
    let mut request: Value = serde_json::from_slice(&body)?;
    let records = request["Records"].as_array().cloned().unwrap_or_default();
    let refused: Vec<bool> = {
        let mut rng = state.rng.lock().unwrap_or_else(|p| p.into_inner());
        records
            .iter()
            .map(|_| rng.f64() < state.plan.record_failure_rate)
            .collect()
    };
    let accepted: Vec<Value> = records
        .iter()
        .zip(&refused)
        .filter(|(_, r)| !**r)
        .map(|(rec, _)| rec.clone())
        .collect();
    let mut upstream_entries = Vec::new().into_iter();
    if !accepted.is_empty() {
        state
            .stats
            .records_forwarded
            .fetch_add(accepted.len(), Ordering::Relaxed);
        request["Records"] = Value::Array(accepted);
        let resp = forward(state, parts, Bytes::from(request.to_string())).await?;
        if resp.status() != 200 {
            return Ok(resp);
        }
        let body = resp.into_body().collect().await?.to_bytes();
        let v: Value = serde_json::from_slice(&body)?;
        upstream_entries = v["RequestResponses"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter();
    }
    let mut failed = 0;
    let entries: Vec<Value> = refused
        .iter()
        .map(|&r| {
            if r {
                failed += 1;
                json!({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."})
            } else {
                upstream_entries
                    .next()
                    .unwrap_or_else(|| json!({"RecordId": "missing"}))
            }
        })
        .collect();
    state
        .stats
        .records_refused
        .fetch_add(failed, Ordering::Relaxed);
    json_response(
        200,
        &json!({"FailedPutCount": failed, "Encrypted": false, "RequestResponses": entries}),
    )
}
