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
        }
    }
}
