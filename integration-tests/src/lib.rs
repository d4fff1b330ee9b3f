//! pulselake on one machine: moto as the AWS API, and a harness that does what AWS
//! does between services (IoT rule routing, the Kinesis event source mapping,
//! Firehose delivery), so the functions' code paths are exactly those that run in AWS.

pub mod api_gateway;
pub mod cfn;
pub mod compaction_scenario;
pub mod duckdb;
pub mod erasure_scenario;
pub mod esm;
pub mod fhir_schema;
pub mod firehose;
pub mod http;
pub mod inspect;
pub mod invoke;
pub mod iot;
pub mod lambda_watch;
pub mod metrics;
pub mod migration_scenario;
pub mod moto;
pub mod names;
pub mod onboard;
pub mod partner_client;
pub mod partner_scenario;
pub mod partner_stack;
pub mod provision;
pub mod proxy;
pub mod pyarrow;
pub mod scenario;
pub mod simulator;
pub mod sqs_esm;
pub mod team_scenario;

use std::time::Duration;

pub use moto::Moto;
pub use provision::Stack;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// A running local platform: moto, the provisioned resources and, optionally, a
/// fault-injecting proxy the functions reach AWS through.
pub struct LocalPlatform {
    pub moto: Moto,
    pub stack: Stack,
    pub proxy: Option<proxy::FaultProxy>,
    /// This platform's CloudWatch metrics (see [`metrics`]).
    pub metrics_scope: u64,
}

impl LocalPlatform {
    /// Starts moto on a free port and provisions everything.
    pub async fn start(faults: Option<proxy::FaultPlan>) -> Result<LocalPlatform> {
        metrics::capture();
        let moto = Moto::start()?;
        let stack = Stack::provision(moto.sdk_config().await, 2).await?;
        let proxy = match faults {
            Some(plan) => Some(proxy::FaultProxy::start(&moto.endpoint, plan).await?),
            None => None,
        };
        Ok(LocalPlatform {
            moto,
            stack,
            proxy,
            metrics_scope: metrics::new_scope(),
        })
    }

    /// Sum of a metric the functions of this platform emitted, e.g. `file-ingest/FilesIngested`.
    pub fn metric_total(&self, key: &str) -> f64 {
        metrics::total(self.metrics_scope, key)
    }

    /// The endpoint functions use: the proxy when faults are injected, else moto.
    pub fn function_endpoint(&self) -> &str {
        self.proxy
            .as_ref()
            .map_or(self.moto.endpoint.as_str(), |p| p.endpoint.as_str())
    }

    /// file-ingest, in process, configured as `template.yaml` configures it.
    pub async fn file_ingest(&self) -> Result<invoke::FileIngestFn> {
        let sdk = moto::sdk_config_for(self.function_endpoint()).await;
        let ingest = file_ingest::build(&self.stack.file_ingest_config(), &sdk)
            .await
            .map_err(|e| e.to_string())?;
        Ok(invoke::FileIngestFn {
            ingest,
            timeout: Duration::from_secs(300),
            metrics_scope: self.metrics_scope,
        })
    }

    /// vitals-alert, in process, configured as `template.yaml` configures it (the rules
    /// document is read now, as at a cold start).
    pub async fn vitals_alert(&self) -> Result<invoke::VitalsAlertFn> {
        let sdk = moto::sdk_config_for(self.function_endpoint()).await;
        let alert = vitals_alert::build(&self.stack.vitals_alert_config(), &sdk)
            .await
            .map_err(|e| e.to_string())?;
        Ok(invoke::VitalsAlertFn {
            alert,
            timeout: Duration::from_secs(60),
            metrics_scope: self.metrics_scope,
        })
    }

    /// device-watch (the silence sweep), configured as `template.yaml` configures it;
    /// tests call its `sweep` with the clock they need.
    pub async fn device_watch(&self) -> Result<device_watch::AwsDeviceWatch> {
        let sdk = moto::sdk_config_for(self.function_endpoint()).await;
        device_watch::build(&self.stack.device_watch_config(), &sdk)
            .await
            .map_err(|e| e.to_string().into())
    }

    /// catalog-sync, in process, configured as `template.yaml` configures it.
    pub async fn catalog_sync(&self) -> Result<invoke::CatalogSyncFn> {
        let sdk = moto::sdk_config_for(self.function_endpoint()).await;
        Ok(invoke::CatalogSyncFn {
            sync: catalog_sync::build(&self.stack.catalog_sync_config(), &sdk),
            timeout: Duration::from_secs(60),
            metrics_scope: self.metrics_scope,
        })
    }

    /// stream-ingest, in process, configured as `template.yaml` configures it.
    pub async fn stream_ingest(&self) -> Result<invoke::StreamIngestFn> {
        let names = &self.stack.names;
        let config = stream_ingest::Config {
            trigger: stream_ingest::Trigger::Kinesis,
            delivery_stream: names.delivery_stream.clone(),
            quarantine_bucket: names.quarantine_bucket.clone(),
            registry_table: names.registry_table.clone(),
            mappings_parameter: Some(names.mappings_parameter.clone()),
            policy: pulselake_domain::TimePolicy::stream(),
            registry_ttl: Duration::from_secs(300),
        };
        let sdk = moto::sdk_config_for(self.function_endpoint()).await;
        let ingest = stream_ingest::build(&config, &sdk)
            .await
            .map_err(|e| e.to_string())?;
        Ok(invoke::StreamIngestFn {
            ingest,
            timeout: Duration::from_secs(60),
            metrics_scope: self.metrics_scope,
        })
    }
}

impl LocalPlatform {
    /// The partner API, served over HTTP on loopback as API Gateway would serve it.
    pub async fn partner_api(&self) -> Result<api_gateway::LocalApi> {
        let (listener, base_url) = api_gateway::bind().await?;
        let sdk = moto::sdk_config_for(self.function_endpoint()).await;
        let config = partner_stack::partner_api_config(
            &self.stack.names,
            &base_url,
            &self.stack.export_queue_url,
        );
        let api = partner_api::build(&config, &sdk)
            .await
            .map_err(|e| e.to_string())?;
        let function = invoke::PartnerApiFn {
            api,
            timeout: Duration::from_secs(29),
            metrics_scope: self.metrics_scope,
        };
        Ok(api_gateway::LocalApi::serve(listener, base_url, function))
    }

    /// export-worker behind the export queue, as the template maps it.
    pub async fn export_worker(&self) -> Result<sqs_esm::SqsMapping<invoke::ExportWorkerFn>> {
        let sdk = moto::sdk_config_for(self.function_endpoint()).await;
        let worker = export_worker::build(
            &partner_stack::export_worker_config(&self.stack.names),
            &sdk,
        );
        let function = invoke::ExportWorkerFn {
            worker,
            timeout: Duration::from_secs(900),
            metrics_scope: self.metrics_scope,
        };
        Ok(sqs_esm::SqsMapping::new(
            self.stack.sqs.clone(),
            &self.stack.export_queue_url,
            function,
        ))
    }
}

impl LocalPlatform {
    /// The retention job, configured as `template.yaml` configures it; tests call its
    /// `run` with the clock and the time budget they need.
    pub async fn retention(&self) -> retention::AwsRetention {
        let sdk = moto::sdk_config_for(self.function_endpoint()).await;
        let names = &self.stack.names;
        retention::build(
            &retention::Config {
                lake_bucket: names.lake_bucket.clone(),
                glue_database: names.glue_database.clone(),
                glue_table: names.glue_table.clone(),
                audit_bucket: names.audit_bucket.clone(),
                years: pulselake_domain::retention::MIN_RETENTION_YEARS,
            },
            &sdk,
        )
    }
}

impl LocalPlatform {
    /// The erasure function, configured as `template.yaml` configures it, behind the
    /// erasure queue as the template maps it.
    pub async fn erasure(&self) -> Result<LocalErasure> {
        let sdk = moto::sdk_config_for(self.function_endpoint()).await;
        let names = &self.stack.names;
        let job = erasure::build(
            &erasure::Config {
                lake_bucket: names.lake_bucket.clone(),
                erasure_table: names.erasure_table.clone(),
                passes_table: names.erasure_passes_table.clone(),
                queue_url: self.stack.erasure_queue_url.clone(),
                audit_bucket: names.audit_bucket.clone(),
                staging_bucket: names.staging_bucket.clone(),
                processed_bucket: names.processed_bucket.clone(),
                quarantine_bucket: names.quarantine_bucket.clone(),
                naming_key_secret: names.naming_key_secret.clone(),
                exports_bucket: names.exports_bucket.clone(),
                jobs_table: names.export_jobs_table.clone(),
                partners_table: names.partners_table.clone(),
                alert_state_table: names.alert_state_table.clone(),
                heartbeats_table: names.heartbeat_table.clone(),
            },
            &sdk,
        )
        .await?;
        let function = invoke::ErasureFn {
            job,
            timeout: Duration::from_secs(900),
            metrics_scope: self.metrics_scope,
        };
        Ok(LocalErasure {
            units: sqs_esm::SqsMapping::new(
                self.stack.sqs.clone(),
                &self.stack.erasure_queue_url,
                function,
            ),
        })
    }
}

/// The erasure function on the local stack: its scheduled run, then its queue drained
/// through the function as Lambda would.
pub struct LocalErasure {
    pub units: sqs_esm::SqsMapping<invoke::ErasureFn>,
}

impl LocalErasure {
    /// A whole pass: planned at `now_ms`, every unit run from the queue; the pass's
    /// evidence (`None` when nothing was pending).
    pub async fn run(&mut self, now_ms: i64) -> Result<Option<erasure::ErasureEvidence>> {
        use pulselake_adapters::ErasurePasses;
        let pass = match self.units.function().job.plan(now_ms).await? {
            erasure::Planned::NothingPending => return Ok(None),
            erasure::Planned::Running => return Err("an erasure pass is running already".into()),
            erasure::Planned::Finished(ev) => return Ok(Some(*ev)),
            erasure::Planned::Started { pass, .. } => pass,
        };
        self.units.drain(Duration::from_secs(300)).await?;
        let evidence = self
            .units
            .function()
            .job
            .passes
            .get(&pass)
            .await?
            .and_then(|p| p.evidence)
            .ok_or("the erasure pass did not finish (see the queue's dead letters)")?;
        Ok(Some(serde_json::from_str(&evidence)?))
    }
}

impl LocalPlatform {
    /// Compaction, configured as `template.yaml` configures it; tests and the demo call
    /// `compact` per partition (the scheduled run takes the days before today).
    pub async fn compaction(&self) -> compaction::AwsJob {
        let sdk = moto::sdk_config_for(self.function_endpoint()).await;
        let names = &self.stack.names;
        compaction::build(
            &compaction::Config {
                lake_bucket: names.lake_bucket.clone(),
                audit_bucket: names.audit_bucket.clone(),
                max_rows: 8_000_000,
            },
            &sdk,
        )
    }
}

/// Wall-clock now, in epoch ms.
pub fn invoke_now_ms() -> i64 {
    pulselake_adapters::now_ms()
}
