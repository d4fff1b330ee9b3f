//! The legacy Kafka way in, as `template.yaml` declares it: off unless a cluster is named,
//! the stream-ingest binary on the Kafka trigger, and the same guarantees as the devices'
//! stream (item failures, bisection, an on-failure queue, retries).

use pulselake_local::cfn::{template, text};
use serde_norway::Value;

fn resource<'t>(t: &'t Value, name: &str) -> &'t Value {
    let r = &t["Resources"][name];
    assert!(!r.is_null(), "{name} is declared");
    r
}

#[test]
fn the_legacy_stream_is_off_unless_a_cluster_is_named() {
    let t = template();
    for p in [
        "LegacyMskClusterArn",
        "LegacyKafkaBootstrapServers",
        "LegacyKafkaSecretArn",
    ] {
        assert_eq!(
            text(&t["Parameters"][p]["Default"]),
            "",
            "{p} defaults to off"
        );
    }
    for (name, condition) in [
        ("LegacyStreamIngestFunction", "HasLegacyStream"),
        ("LegacyStreamIngestRole", "HasLegacyStream"),
        ("LegacyStreamIngestFailures", "HasLegacyStream"),
        ("LegacyMskMapping", "HasLegacyMsk"),
        ("LegacyKafkaMapping", "HasLegacyKafka"),
    ] {
        assert_eq!(text(&resource(&t, name)["Condition"]), condition, "{name}");
    }
}

#[test]
fn the_legacy_function_is_the_stream_binary_on_the_kafka_trigger() {
    let t = template();
    let legacy = resource(&t, "LegacyStreamIngestFunction");
    let stream = resource(&t, "StreamIngestFunction");
    assert_eq!(
        text(&legacy["Metadata"]["BuildProperties"]["Binary"]),
        text(&stream["Metadata"]["BuildProperties"]["Binary"]),
        "shared code, not a copy"
    );
    let env = &legacy["Properties"]["Environment"]["Variables"];
    assert_eq!(text(&env["TRIGGER"]), "kafka");
    let stream_env = &stream["Properties"]["Environment"]["Variables"];
    for v in [
        "DELIVERY_STREAM_NAME",
        "QUARANTINE_BUCKET",
        "REGISTRY_TABLE",
        "DEVICE_MAPPINGS_PARAMETER",
    ] {
        assert_eq!(
            text(&env[v]),
            text(&stream_env[v]),
            "{v}: the same lake, registry and mappings"
        );
    }
    assert_ne!(
        text(&legacy["Properties"]["Role"]),
        text(&stream["Properties"]["Role"]),
        "its own role: the cluster's permissions stay off the devices' path"
    );
}

#[test]
fn both_kafka_mappings_report_item_failures_bisect_retry_and_keep_what_runs_out() {
    let t = template();
    for name in ["LegacyMskMapping", "LegacyKafkaMapping"] {
        let p = &resource(&t, name)["Properties"];
        assert!(
            text(&p["FunctionName"]).contains("LegacyStreamIngestFunction"),
            "{name}"
        );
        assert_eq!(
            text(&p["FunctionResponseTypes"]),
            "ReportBatchItemFailures",
            "{name}"
        );
        assert_eq!(
            p["BisectBatchOnFunctionError"].as_bool(),
            Some(true),
            "{name}"
        );
        assert!(
            p["MaximumRetryAttempts"].as_u64().is_some_and(|n| n > 0),
            "{name}"
        );
        assert!(
            text(&p["DestinationConfig"]["OnFailure"]["Destination"])
                .contains("LegacyStreamIngestFailures"),
            "{name}"
        );
        // Kafka mappings honour error handling only with provisioned pollers.
        assert!(
            p["ProvisionedPollerConfig"]["MinimumPollers"]
                .as_u64()
                .is_some(),
            "{name}"
        );
        assert_eq!(
            text(&p["StartingPosition"]),
            "TRIM_HORIZON",
            "{name}: nothing the topic holds is skipped"
        );
    }
    let kafka = &resource(&t, "LegacyKafkaMapping")["Properties"];
    let access = &kafka["SourceAccessConfigurations"][0];
    assert_eq!(
        text(&access["Type"]),
        "BASIC_AUTH",
        "SASL/PLAIN, as Event Hubs' Kafka endpoint takes it"
    );
    assert_eq!(text(&access["URI"]), "!Ref LegacyKafkaSecretArn");
}

#[test]
fn the_legacy_role_reads_only_its_cluster_topic_and_secret() {
    let t = template();
    let policy = text(&resource(&t, "LegacyStreamIngestRole")["Properties"]["Policies"]);
    for needed in [
        "LegacyMskClusterArn",
        "LegacyMskTopic",
        "LegacyKafkaSecretArn",
        "kafka-cluster:ReadData",
    ] {
        assert!(policy.contains(needed), "{needed}");
    }
    assert!(
        !policy.contains("kinesis:"),
        "the legacy function never reads the devices' stream"
    );
}
