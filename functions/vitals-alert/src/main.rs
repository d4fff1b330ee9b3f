//! Lambda entry point: wiring only.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use pulselake_adapters::kinesis_events::StreamBatch;
use vitals_alert::{Config, build, function_handler};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = pulselake_adapters::load_config().await;
    // A bad rules document stops here, at init, with its reason: never on a patient.
    let alert = build(&config, &sdk).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<StreamBatch>| {
        function_handler(event, &alert)
    }))
    .await
}
