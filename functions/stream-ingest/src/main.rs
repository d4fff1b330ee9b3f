//! Lambda entry point: wiring only. Clients are built once per cold start and lent to every invocation.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use stream_ingest::{
    Config, KafkaBatch, StreamBatch, Trigger, build, function_handler, kafka_handler,
};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = pulselake_adapters::load_config().await;
    let ingest = build(&config, &sdk).await?;
    match config.trigger {
        Trigger::Kinesis => {
            lambda_runtime::run(service_fn(|event: LambdaEvent<StreamBatch>| {
                function_handler(event, &ingest)
            }))
            .await
        }
        Trigger::Kafka => {
            lambda_runtime::run(service_fn(|event: LambdaEvent<KafkaBatch>| {
                kafka_handler(event, &ingest)
            }))
            .await
        }
    }
}
