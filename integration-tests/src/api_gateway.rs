//! API Gateway for the local stack: an HTTP server on loopback that turns each request
//! into the REST API proxy event the partner API receives in AWS (stage `v1`, query
//! and path decoded as API Gateway decodes them), invokes the function with it, and
//! answers with the proxy response. Tests and the demo call it with a real HTTP client.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::Result;
use crate::invoke::Invoker;
use crate::moto::{ACCOUNT, REGION};

/// The stage the template deploys, first in every path.
pub const STAGE: &str = "v1";

/// The local API: where it listens, and the task serving it.
pub struct LocalApi {
    /// `http://127.0.0.1:<port>/v1`: the API's public base URL.
    pub base_url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LocalApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A free loopback address, bound: the API's base URL must be known before the
/// function is built (it is the token audience), so the listener comes first.
pub async fn bind() -> Result<(TcpListener, String)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    Ok((listener, format!("http://{addr}/{STAGE}")))
}

impl LocalApi {
    /// Serves `function` on `listener` (from [`bind`]).
    pub fn serve<I: Invoker + 'static>(
        listener: TcpListener,
        base_url: String,
        function: I,
    ) -> LocalApi {
        let function = Arc::new(function);
        let task = tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let function = function.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(function.clone(), peer, req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        LocalApi { base_url, task }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

async fn handle<I: Invoker>(
    function: Arc<I>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> std::result::Result<Response<Full<Bytes>>, BoxError> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let raw_path = parts.uri.path();
    let Some(path) = raw_path
        .strip_prefix(&format!("/{STAGE}"))
        .filter(|p| p.is_empty() || p.starts_with('/'))
    else {
        // API Gateway answers a path outside the stage itself.
        return Ok(Response::builder()
            .status(403)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(
                b"{\"message\":\"Forbidden\"}",
            )))?);
    };
    let path = decode(if path.is_empty() { "/" } else { path });
    let mut headers = serde_json::Map::new();
    let mut multi_headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &parts.headers {
        let v = v.to_str().unwrap_or_default().to_owned();
        headers.insert(k.as_str().to_owned(), json!(v));
        multi_headers
            .entry(k.as_str().to_owned())
            .or_default()
            .push(v);
    }
    let mut query = serde_json::Map::new();
    let mut multi_query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in partner_api::http::form_pairs(parts.uri.query().unwrap_or_default()) {
        query.insert(k.clone(), json!(v));
        multi_query.entry(k).or_default().push(v);
    }
    let (text, base64) = match std::str::from_utf8(&body) {
        Ok(t) => (t.to_owned(), false),
        Err(_) => {
            use base64::Engine;
            (
                base64::engine::general_purpose::STANDARD.encode(&body),
                true,
            )
        }
    };
    let request_id = format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u16(..0x1000),
        fastrand::u16(..0x1000),
        fastrand::u64(..1 << 48)
    );
    let none_if_empty = |m: Value| {
        if m.as_object().is_some_and(|o| o.is_empty()) {
            Value::Null
        } else {
            m
        }
    };
    let event = json!({
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": parts.method.as_str(),
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": none_if_empty(Value::Object(query)),
        "multiValueQueryStringParameters": none_if_empty(json!(multi_query)),
        "pathParameters": {"proxy": path.trim_start_matches('/')},
        "stageVariables": null,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "local",
            "stage": STAGE,
            "requestId": request_id,
            "httpMethod": parts.method.as_str(),
            "path": raw_path,
            "resourcePath": "/{proxy+}",
            "identity": {"sourceIp": peer.ip().to_string()},
            "domainName": format!("local.execute-api.{REGION}.amazonaws.com"),
        },
        "body": if body.is_empty() { Value::Null } else { json!(text) },
        "isBase64Encoded": base64,
    });
    let response = match function.invoke(event).await {
        Ok(r) => r,
        Err(e) => {
            // What API Gateway answers when the integration fails.
            tracing::error!(error = %e, "partner-api invocation failed");
            return Ok(Response::builder()
                .status(502)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(
                    b"{\"message\": \"Internal server error\"}",
                )))?);
        }
    };
    let mut out = Response::builder().status(response["statusCode"].as_u64().unwrap_or(502) as u16);
    for (k, v) in response["headers"].as_object().into_iter().flatten() {
        if let Some(v) = v.as_str() {
            out = out.header(k.as_str(), v);
        }
    }
    for (k, vs) in response["multiValueHeaders"]
        .as_object()
        .into_iter()
        .flatten()
    {
        for v in vs
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if response["headers"].get(k).is_none() {
                out = out.header(k.as_str(), v);
            }
        }
    }
    let body = match (
        response["body"].as_str(),
        response["isBase64Encoded"].as_bool(),
    ) {
        (Some(b), Some(true)) => {
            use base64::Engine;
            Bytes::from(base64::engine::general_purpose::STANDARD.decode(b)?)
        }
        (Some(b), _) => Bytes::from(b.to_owned()),
        (None, _) => Bytes::new(),
    };
    Ok(out.body(Full::new(body))?)
}
