//! Lambda entry point: wiring only.

use aws_lambda_events::event::sqs::SqsEvent;
use export_worker::{Config, build, function_handler};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = pulselake_adapters::load_config().await;
    let worker = build(&config, &sdk);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        function_handler(event, &worker)
    }))
    .await
}
