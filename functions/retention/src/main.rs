//! Lambda entry point: wiring only.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use retention::{Config, RunRequest, build, function_handler};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = pulselake_adapters::load_config().await;
    let job = build(&config, &sdk);
    lambda_runtime::run(service_fn(|event: LambdaEvent<RunRequest>| {
        function_handler(event, &job)
    }))
    .await
}
