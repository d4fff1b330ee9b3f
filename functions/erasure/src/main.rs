//! Lambda entry point: wiring only.

use erasure::{Config, build, function_handler};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = pulselake_adapters::load_config().await;
    let job = build(&config, &sdk).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<erasure::Invocation>| {
        function_handler(event, &job)
    }))
    .await
}
