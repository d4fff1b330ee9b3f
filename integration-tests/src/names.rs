//! Resource names, as `template.yaml` names them for a stack called `pulselake`.

#[derive(Debug, Clone)]
pub struct Names {
    pub stream: String,
    pub delivery_stream: String,
    pub lake_bucket: String,
    pub quarantine_bucket: String,
    /// Local only: where moto's Firehose writes raw records before the harness converts them.
    pub firehose_buffer_bucket: String,
    pub registry_table: String,
    pub mappings_parameter: String,
    pub stream_failures_queue: String,
    pub staging_bucket: String,
    pub processed_bucket: String,
    pub files_queue: String,
    pub files_dlq: String,
    pub dedup_table: String,
    pub alias_table: String,
    pub ops_topic: String,
    /// Local only: subscribed to the ops topic, so tests and the demo see what ops receive.
    pub ops_inbox: String,
    pub glue_database: String,
    pub glue_table: String,
    pub catalog_queue: String,
    pub catalog_dlq: String,
    pub alert_state_table: String,
    pub alerts_topic: String,
    /// Local only: subscribed to the alerts topic (raw delivery), as a pager would be.
    pub alerts_inbox: String,
    pub alert_rules_parameter: String,
    pub heartbeat_table: String,
    /// The IoT policy device certificates carry.
    pub device_policy: String,
    pub naming_key_secret: String,
    pub partners_table: String,
    pub export_jobs_table: String,
    /// Client assertions' `jti`s, until they expire.
    pub token_claims_table: String,
    pub exports_bucket: String,
    pub audit_bucket: String,
    pub export_queue: String,
    pub export_dlq: String,
    /// The KMS key that signs access tokens (an alias).
    pub token_signing_key: String,
    /// Erasure requests (the tombstones).
    pub erasure_table: String,
    pub erasure_passes_table: String,
    pub erasure_queue: String,
    pub erasure_dlq: String,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            stream: "pulselake-vitals".into(),
            delivery_stream: "pulselake-lake".into(),
            lake_bucket: "pulselake-lake-123456789012".into(),
            quarantine_bucket: "pulselake-quarantine-123456789012".into(),
            firehose_buffer_bucket: "pulselake-firehose-buffer".into(),
            registry_table: "pulselake-device-registry".into(),
            mappings_parameter: "/pulselake/device-mappings".into(),
            stream_failures_queue: "pulselake-stream-ingest-failures".into(),
            staging_bucket: "pulselake-staging-123456789012".into(),
            processed_bucket: "pulselake-processed-123456789012".into(),
            files_queue: "pulselake-files".into(),
            files_dlq: "pulselake-files-dlq".into(),
            dedup_table: "pulselake-file-dedup".into(),
            alias_table: "pulselake-subject-aliases".into(),
            ops_topic: "pulselake-ops".into(),
            ops_inbox: "pulselake-ops-inbox".into(),
            glue_database: "pulselake_lake".into(),
            glue_table: "readings".into(),
            catalog_queue: "pulselake-catalog".into(),
            catalog_dlq: "pulselake-catalog-dlq".into(),
            alert_state_table: "pulselake-alert-state".into(),
            alerts_topic: "pulselake-alerts".into(),
            alerts_inbox: "pulselake-alerts-inbox".into(),
            alert_rules_parameter: "/pulselake/alert-rules".into(),
            heartbeat_table: "pulselake-device-heartbeats".into(),
            device_policy: "pulselake-device".into(),
            naming_key_secret: "pulselake/naming-key".into(),
            partners_table: "pulselake-partners".into(),
            export_jobs_table: "pulselake-export-jobs".into(),
            token_claims_table: "pulselake-token-claims".into(),
            exports_bucket: "pulselake-exports-123456789012".into(),
            audit_bucket: "pulselake-audit-123456789012".into(),
            export_queue: "pulselake-exports".into(),
            export_dlq: "pulselake-exports-dlq".into(),
            token_signing_key: "alias/pulselake-token-signing".into(),
            erasure_table: "pulselake-erasure-requests".into(),
            erasure_passes_table: "pulselake-erasure-passes".into(),
            erasure_queue: "pulselake-erasure".into(),
            erasure_dlq: "pulselake-erasure-dlq".into(),
        }
    }
}
