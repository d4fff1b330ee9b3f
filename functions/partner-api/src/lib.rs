//! partner-api: API Gateway -> this function. FHIR Bulk Data Access (`$export`, status,
//! cancel, files) behind SMART Backend Services (`/auth/token`), each partner under
//! its own deny-by-default policy and pseudonym key; every request audited.

pub mod api;
pub mod auth;
pub mod config;
pub mod groups;
pub mod http;
pub mod jobs;

use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use jsonwebtoken::DecodingKey;
use lambda_runtime::LambdaEvent;
use pulselake_adapters::{
    AwsError, BucketAuditLog, DynamoExportJobs, DynamoOnce, DynamoPartners, KmsSigner, S3Objects,
    SdkConfig, SecretsManager, SqsQueue, TokenSigner,
};

pub use api::{ApiPorts, PartnerApi};
pub use auth::unguessable_id;
pub use config::Config;
pub use config::Settings;

/// The API over AWS.
pub struct AwsPorts;

impl ApiPorts for AwsPorts {
    type Partners = DynamoPartners;
    type Claims = DynamoOnce;
    type Jobs = DynamoExportJobs;
    type Signer = KmsSigner;
    type Audit = BucketAuditLog<S3Objects>;
    type Queue = SqsQueue;
    type Objects = S3Objects;
    type Secrets = SecretsManager;
}

pub type AwsPartnerApi = PartnerApi<AwsPorts>;

/// Why the function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the token signing key's public key is unusable: {0}")]
    SigningKey(String),
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// Builds the API once per cold start (the signing key's public key is fetched now).
pub async fn build(config: &Config, sdk: &SdkConfig) -> Result<AwsPartnerApi, StartError> {
    let signer = KmsSigner::from_config(sdk, &config.signing_key_id);
    let pem = signer.public_key_pem().await?;
    let verify_key = DecodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|e| StartError::SigningKey(e.to_string()))?;
    Ok(PartnerApi {
        partners: DynamoPartners::from_config(sdk, &config.partners_table),
        claims: DynamoOnce::from_config(sdk, &config.claims_table),
        jobs: DynamoExportJobs::from_config(sdk, &config.jobs_table),
        signer,
        verify_key,
        audit: BucketAuditLog {
            writer: S3Objects::from_config(sdk),
            bucket: config.audit_bucket.clone(),
        },
        queue: SqsQueue::from_config(sdk, &config.export_queue_url),
        objects: S3Objects::from_config(sdk),
        secrets: SecretsManager::from_config(sdk),
        settings: Settings {
            base_url: config.base_url.clone(),
            lake_bucket: config.lake_bucket.clone(),
            exports_bucket: config.exports_bucket.clone(),
        },
    })
}

/// The API Gateway event as the API's request.
pub fn request_of(event: &ApiGatewayProxyRequest) -> http::Request {
    let body = match (&event.body, event.is_base64_encoded) {
        (Some(b), true) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        (Some(b), false) => b.clone(),
        (None, _) => String::new(),
    };
    let mut query = Vec::new();
    for (k, _) in event.multi_value_query_string_parameters.iter() {
        for v in event
            .multi_value_query_string_parameters
            .all(k)
            .into_iter()
            .flatten()
        {
            query.push((k.to_owned(), v.to_owned()));
        }
    }
    if query.is_empty() {
        for (k, _) in event.query_string_parameters.iter() {
            if let Some(v) = event.query_string_parameters.first(k) {
                query.push((k.to_owned(), v.to_owned()));
            }
        }
    }
    http::Request {
        method: event.http_method.as_str().to_owned(),
        path: event.path.clone().unwrap_or_default(),
        query,
        headers: event
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        body,
        request_id: event.request_context.request_id.clone().unwrap_or_default(),
    }
}

/// The API's response as API Gateway's.
pub fn response_of(r: http::Response) -> ApiGatewayProxyResponse {
    let mut out = ApiGatewayProxyResponse::default();
    out.status_code = i64::from(r.status);
    for (k, v) in &r.headers {
        if let (Ok(name), Ok(value)) = (
            ::http::HeaderName::from_bytes(k.as_bytes()),
            ::http::HeaderValue::from_str(v),
        ) {
            out.headers.insert(name, value);
        }
    }
    if !r.body.is_empty() {
        out.body = Some(Body::Text(r.body));
    }
    out
}

/// One invocation: an API Gateway proxy request.
pub async fn function_handler<X: ApiPorts>(
    event: LambdaEvent<ApiGatewayProxyRequest>,
    api: &PartnerApi<X>,
) -> Result<ApiGatewayProxyResponse, std::convert::Infallible> {
    let req = request_of(&event.payload);
    let response = api.handle(&req, now_ms()).await;
    tracing::info!(status = response.status, route = %route_name(&req.path), "request done");
    Ok(response_of(response))
}

/// A route's shape for the log (ids stripped: they mean something to a partner).
fn route_name(path: &str) -> String {
    path.split('/')
        .map(|s| {
            if s.len() >= 16 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                "{id}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

pub use pulselake_adapters::now_ms;
