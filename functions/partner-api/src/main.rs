//! Lambda entry point: wiring only.

use aws_lambda_events::event::apigw::ApiGatewayProxyRequest;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use partner_api::{Config, build, function_handler};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = pulselake_adapters::load_config().await;
    let api = build(&config, &sdk).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayProxyRequest>| {
        function_handler(event, &api)
    }))
    .await
}
