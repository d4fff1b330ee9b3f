//! `template.yaml` says the same as the code: one source of truth for the lake schema,
//! the device mappings and the event source mapping, and the security baseline holds
//! for every resource of its kind.

use pulselake_local::cfn::{of_type, resources, template, text};
use pulselake_local::esm::MappingConfig;
use pulselake_local::moto::workspace_root;
use serde_norway::Value;

#[test]
fn the_glue_readings_table_matches_the_parquet_writer_column_for_column() {
    let t = template();
    let table = &t["Resources"]["ReadingsTable"]["Properties"]["TableInput"];
    let columns: Vec<(String, String)> = table["StorageDescriptor"]["Columns"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| (text(&c["Name"]), text(&c["Type"])))
        .collect();
    let written: Vec<(String, String)> = pulselake_lake::parquet_schema()
        .get_fields()
        .iter()
        .map(|f| {
            (
                f.name().to_owned(),
                pulselake_lake::glue_type_of(f).unwrap_or("?").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        columns, written,
        "Glue columns (name, type, order) must equal the Parquet schema"
    );
    let keys: Vec<String> = table["PartitionKeys"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| text(&k["Name"]))
        .collect();
    assert_eq!(keys, pulselake_lake::PARTITION_KEYS);
    assert!(
        table["PartitionKeys"]
            .as_sequence()
            .unwrap()
            .iter()
            .all(|k| text(&k["Type"]) == "string")
    );
}

#[test]
fn the_records_sent_to_firehose_carry_exactly_the_table_columns_and_the_metric() {
    use pulselake_domain::{Metric, Reading, ReadingId, Source};
    let r = Reading {
        reading_id: ReadingId::derive("d", "s", Metric::Spo2, 1),
        subject_id: "subj".into(),
        device_id: "d".into(),
        sensor_id: "s".into(),
        metric: Metric::Spo2,
        value: 97.0,
        measured_at: 1,
        received_at: 2,
        source: Source::Stream,
        source_ref: "shard:1".into(),
        cohort: None,
    };
    let mut line = Vec::new();
    r.write_json_line(&mut line);
    let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
    let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    let mut expected: Vec<String> = pulselake_lake::COLUMNS
        .iter()
        .map(|c| c.name.to_owned())
        .chain(["metric".to_owned()])
        .collect();
    expected.sort();
    assert_eq!(
        keys, expected,
        "Firehose converts records by the Glue columns' names"
    );
    // And the Firehose partitioning query reads the keys the records carry.
    let t = template();
    let query = text(
        &t["Resources"]["LakeDeliveryStream"]["Properties"]["ExtendedS3DestinationConfiguration"]["ProcessingConfiguration"]
            ["Processors"],
    );
    assert!(
        query.contains(".metric") && query.contains(".measured_at"),
        "{query}"
    );
}

#[test]
fn the_deployed_device_mappings_are_the_builtin_document() {
    let t = template();
    let deployed: serde_json::Value = serde_json::from_str(&text(
        &t["Resources"]["DeviceMappingsParameter"]["Properties"]["Value"],
    ))
    .unwrap();
    let builtin: serde_json::Value =
        serde_json::from_str(pulselake_domain::mapping::BUILTIN_MAPPINGS).unwrap();
    assert_eq!(deployed, builtin);
}

#[test]
fn the_stream_trigger_reports_item_failures_bisects_and_has_an_on_failure_destination() {
    let t = template();
    let ev =
        &t["Resources"]["StreamIngestFunction"]["Properties"]["Events"]["Vitals"]["Properties"];
    assert_eq!(
        text(&ev["FunctionResponseTypes"]),
        "ReportBatchItemFailures"
    );
    assert_eq!(ev["BisectBatchOnFunctionError"].as_bool(), Some(true));
    assert!(
        text(&ev["DestinationConfig"]["OnFailure"]["Destination"]).contains("StreamIngestFailures")
    );
    // The local event source mapping runs with the same settings.
    let local = MappingConfig::default();
    assert_eq!(ev["BatchSize"].as_u64(), Some(local.batch_size as u64));
    assert_eq!(
        ev["MaximumRetryAttempts"].as_u64(),
        Some(u64::from(local.max_retries))
    );
    // EventInvokeConfig only applies to async invokes: it must not pretend to cover a stream.
    assert!(of_type(&t, "AWS::Lambda::EventInvokeConfig").is_empty());
}

#[test]
fn firehose_writes_the_lake_layout_and_keeps_errors_out_of_the_table() {
    let t = template();
    let dest =
        &t["Resources"]["LakeDeliveryStream"]["Properties"]["ExtendedS3DestinationConfiguration"];
    let prefix = text(&dest["Prefix"]);
    assert_eq!(
        prefix,
        "readings/metric=!{partitionKeyFromQuery:metric}/year=!{partitionKeyFromQuery:year}/month=!{partitionKeyFromQuery:month}/day=!{partitionKeyFromQuery:day}/"
    );
    let errors = text(&dest["ErrorOutputPrefix"]);
    assert!(errors.starts_with("errors/") && !errors.starts_with("readings/"));
    assert_eq!(
        text(&dest["DataFormatConversionConfiguration"]["SchemaConfiguration"]["TableName"]),
        "!Ref ReadingsTable"
    );
}

#[test]
fn every_bucket_is_kms_or_s3_encrypted_private_and_tls_only() {
    let t = template();
    let policies = of_type(&t, "AWS::S3::BucketPolicy");
    for (name, bucket) in of_type(&t, "AWS::S3::Bucket") {
        let p = &bucket["Properties"];
        assert!(!p["BucketEncryption"].is_null(), "{name} is encrypted");
        let block = &p["PublicAccessBlockConfiguration"];
        for k in [
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        ] {
            assert_eq!(block[k].as_bool(), Some(true), "{name}: {k}");
        }
        assert!(
            !p["LifecycleConfiguration"].is_null(),
            "{name} has a retention lifecycle"
        );
        let (_, policy) = policies
            .iter()
            .find(|(_, pol)| text(&pol["Properties"]["Bucket"]) == format!("!Ref {name}"))
            .unwrap_or_else(|| panic!("{name} has a bucket policy"));
        let denies_plain_http = statements(&policy["Properties"]["PolicyDocument"])
            .iter()
            .any(|st| {
                text(&st["Effect"]) == "Deny"
                    && text(&st["Condition"]["Bool"]["aws:SecureTransport"]) == "false"
            });
        assert!(denies_plain_http, "{name} denies plain HTTP");
    }
}

#[test]
fn every_function_has_its_own_role_an_encrypted_log_group_with_retention_and_json_logs() {
    let t = template();
    let groups = of_type(&t, "AWS::Logs::LogGroup");
    for (name, f) in of_type(&t, "AWS::Serverless::Function") {
        let p = &f["Properties"];
        assert!(
            text(&p["Role"]).contains("Role"),
            "{name} has an explicit least-privilege role"
        );
        assert_eq!(text(&p["LoggingConfig"]["LogFormat"]), "JSON", "{name}");
        let group = text(&p["LoggingConfig"]["LogGroup"])
            .trim_start_matches("!Ref ")
            .to_owned();
        let (_, g) = groups
            .iter()
            .find(|(n, _)| *n == group)
            .unwrap_or_else(|| panic!("{name}: log group {group}"));
        assert!(
            !g["Properties"]["RetentionInDays"].is_null() && !g["Properties"]["KmsKeyId"].is_null(),
            "{group}"
        );
        assert_eq!(
            text(&f["Metadata"]["BuildMethod"]),
            "rust-cargolambda",
            "{name}"
        );
        let binary = text(&f["Metadata"]["BuildProperties"]["Binary"]);
        assert!(
            workspace_root()
                .join("functions")
                .join(&binary)
                .join("Cargo.toml")
                .exists(),
            "{name}: crate {binary}"
        );
    }
}

/// A policy's statements, those under `!If` (a conditional permission) included.
fn statements(doc: &Value) -> Vec<&Value> {
    doc["Statement"]
        .as_sequence()
        .map(|s| {
            s.iter()
                .map(|st| match st {
                    Value::Tagged(t) if t.tag == "!If" => &t.value[1],
                    st => st,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn actions(statement: &Value) -> Vec<String> {
    match &statement["Action"] {
        Value::Sequence(s) => s.iter().map(text).collect(),
        other => vec![text(other)],
    }
}

/// Actions IAM authorizes on `Resource: "*"` only (the Service Authorization Reference
/// lists no resource type for them): Lake Formation's own grants scope its actions; EC2's
/// Describe calls (the Kafka pollers finding the MSK cluster's subnets).
const NO_RESOURCE_TYPES: [&str; 3] = [
    "lakeformation:",
    "cloudwatch:GetMetricStatistics",
    "ec2:Describe",
];

#[test]
fn no_role_allows_a_wildcard_action_and_wildcard_resources_only_for_list_calls() {
    let t = template();
    for (name, role) in of_type(&t, "AWS::IAM::Role") {
        for policy in role["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            for st in statements(&policy["PolicyDocument"]) {
                let acts = actions(st);
                assert!(
                    acts.iter().all(|a| a != "*" && !a.ends_with(":*")),
                    "{name}: {acts:?}"
                );
                if text(&st["Resource"]) == "*" {
                    assert!(
                        acts.iter().all(|a| a.contains(":List")
                            || NO_RESOURCE_TYPES.iter().any(|p| a.starts_with(p))),
                        "{name}: only List calls (and actions without resource types) may use Resource *: {acts:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_files_trigger_reports_item_failures_with_a_dlq_and_a_long_enough_visibility_timeout() {
    let t = template();
    let f = &t["Resources"]["FileIngestFunction"]["Properties"];
    let ev = &f["Events"]["StagedFiles"]["Properties"];
    assert_eq!(
        text(&ev["FunctionResponseTypes"]),
        "ReportBatchItemFailures"
    );
    let queue = &t["Resources"]["FilesQueue"]["Properties"];
    let timeout = f["Timeout"].as_u64().unwrap();
    let visibility = queue["VisibilityTimeout"].as_u64().unwrap();
    assert!(
        visibility >= 6 * timeout,
        "visibility {visibility} s < 6 x timeout {timeout} s"
    );
    assert!(
        queue["RedrivePolicy"]["maxReceiveCount"]
            .as_u64()
            .is_some_and(|n| n > 1)
    );
    assert!(text(&queue["RedrivePolicy"]["deadLetterTargetArn"]).contains("FilesDeadLetterQueue"));
    let staging = &t["Resources"]["StagingBucket"]["Properties"];
    assert_eq!(
        text(&staging["VersioningConfiguration"]["Status"]),
        "Enabled",
        "re-uploads keep the version being read"
    );
    assert!(
        text(&staging["NotificationConfiguration"]["QueueConfigurations"][0]["Queue"])
            .contains("FilesQueue")
    );
}

#[test]
fn the_dedup_table_expires_items_on_the_attribute_the_code_writes() {
    let t = template();
    let ttl = &t["Resources"]["FileDedupTable"]["Properties"]["TimeToLiveSpecification"];
    assert_eq!(ttl["Enabled"].as_bool(), Some(true));
    // tests/file_pipeline.rs checks that every item the function writes carries it.
    assert_eq!(text(&ttl["AttributeName"]), "expiration");
}

#[test]
fn lake_files_created_or_removed_reach_catalog_sync_with_item_failures_and_a_dlq() {
    let t = template();
    let configs = t["Resources"]["LakeBucket"]["Properties"]["NotificationConfiguration"]
        ["QueueConfigurations"]
        .as_sequence()
        .unwrap();
    let events: Vec<String> = configs.iter().map(|c| text(&c["Event"])).collect();
    for wanted in ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"] {
        assert!(events.iter().any(|e| e == wanted), "{wanted} in {events:?}");
    }
    for c in configs {
        assert!(text(&c["Queue"]).contains("CatalogQueue"));
        // Only data files: Firehose error output and file-ingest's staging stay out.
        assert_eq!(
            text(&c["Filter"]["S3Key"]["Rules"][0]["Value"]),
            pulselake_domain::partition::READINGS_PREFIX
        );
    }
    let f = &t["Resources"]["CatalogSyncFunction"]["Properties"];
    let ev = &f["Events"]["LakeChanges"]["Properties"];
    assert_eq!(
        text(&ev["FunctionResponseTypes"]),
        "ReportBatchItemFailures"
    );
    let queue = &t["Resources"]["CatalogQueue"]["Properties"];
    let timeout = f["Timeout"].as_u64().unwrap();
    assert!(queue["VisibilityTimeout"].as_u64().unwrap() >= 6 * timeout);
    assert!(
        text(&queue["RedrivePolicy"]["deadLetterTargetArn"]).contains("CatalogDeadLetterQueue")
    );
    assert_eq!(
        text(&f["Environment"]["Variables"]["GLUE_TABLE"]),
        text(&t["Resources"]["ReadingsTable"]["Properties"]["TableInput"]["Name"])
    );
}

#[test]
fn athena_queries_run_in_a_workgroup_that_enforces_encrypted_results() {
    let t = template();
    let wg = &t["Resources"]["AthenaWorkGroup"]["Properties"]["WorkGroupConfiguration"];
    assert_eq!(wg["EnforceWorkGroupConfiguration"].as_bool(), Some(true));
    let enc = &wg["ResultConfiguration"]["EncryptionConfiguration"];
    assert_eq!(text(&enc["EncryptionOption"]), "SSE_KMS");
    assert!(text(&enc["KmsKey"]).contains("DataKey"));
    assert!(text(&wg["ResultConfiguration"]["OutputLocation"]).contains("AthenaResultsBucket"));
}

#[test]
fn the_deployed_alert_rules_are_the_builtin_document_and_valid() {
    let t = template();
    let deployed = text(&t["Resources"]["AlertRulesParameter"]["Properties"]["Value"]);
    let deployed: serde_json::Value = serde_json::from_str(&deployed).unwrap();
    let builtin: serde_json::Value =
        serde_json::from_str(pulselake_domain::alerting::DEFAULT_RULES).unwrap();
    assert_eq!(deployed, builtin);
    pulselake_domain::alerting::RuleSet::from_json(&deployed.to_string()).unwrap();
}

#[test]
fn alerting_reads_the_stream_through_its_own_consumer_tuned_for_latency() {
    let t = template();
    let f = &t["Resources"]["VitalsAlertFunction"]["Properties"];
    let ev = &f["Events"]["Vitals"]["Properties"];
    assert!(
        text(&ev["Stream"]).contains("VitalsAlertConsumer"),
        "enhanced fan-out, not the shared read throughput"
    );
    assert_eq!(ev["MaximumBatchingWindowInSeconds"].as_u64(), Some(0));
    assert_eq!(text(&ev["StartingPosition"]), "LATEST");
    assert_eq!(
        text(&ev["FunctionResponseTypes"]),
        "ReportBatchItemFailures"
    );
    assert!(
        text(&ev["DestinationConfig"]["OnFailure"]["Destination"]).contains("VitalsAlertFailures")
    );
    let ttl = &t["Resources"]["AlertStateTable"]["Properties"]["TimeToLiveSpecification"];
    assert_eq!(
        text(&ttl["AttributeName"]),
        "expiration",
        "the attribute DynamoAlertStates writes"
    );
    let alarm = &t["Resources"]["VitalsAlertIteratorAgeAlarm"]["Properties"];
    assert_eq!(text(&alarm["MetricName"]), "IteratorAge");
    assert!(
        text(&t["Resources"]["AlertsTopic"]["Properties"]["KmsMasterKeyId"]).contains("DataKey")
    );
}

#[test]
fn the_metric_catalog_rules_mappings_and_lake_schema_agree() {
    use pulselake_domain::Metric;
    use pulselake_domain::alerting::{DEFAULT_RULES, RuleSet};
    // The catalog: every metric has a LOINC code and accepts its canonical unit first.
    assert_eq!(Metric::all().count(), Metric::COUNT);
    for m in Metric::all() {
        let spec = m.spec();
        assert!(
            !spec.loinc.is_empty() && spec.accepted[0].unit == spec.unit,
            "{m}"
        );
        assert!(spec.min < spec.max, "{m}");
    }
    // Rules: valid against the catalog (metrics, plausible bounds), and every metric is
    // watched by at least one rule.
    let rules = RuleSet::from_json(DEFAULT_RULES).unwrap();
    for m in Metric::all() {
        assert!(
            rules.rules().iter().any(|r| r.metric == m),
            "no rule watches {m}"
        );
    }
    // Mappings: what a vendor's names map to is a catalog metric, and what its units map
    // to is accepted for that metric.
    let doc: serde_json::Value =
        serde_json::from_str(pulselake_domain::mapping::BUILTIN_MAPPINGS).unwrap();
    for mapping in doc["mappings"].as_array().unwrap() {
        let reading = &mapping["reading"];
        let Some(metrics) = reading["metric"]["map"].as_object() else {
            continue;
        };
        let accepted: Vec<&str> = metrics
            .values()
            .map(|m| {
                let metric = Metric::from_name(m.as_str().unwrap())
                    .unwrap_or_else(|| panic!("{m} is not a catalog metric"));
                metric.spec().accepted.iter().map(|c| c.unit)
            })
            .flat_map(|u| u.collect::<Vec<_>>())
            .collect();
        for unit in reading["unit"]["map"]
            .as_object()
            .into_iter()
            .flat_map(|u| u.values())
        {
            let unit = unit.as_str().unwrap();
            assert!(
                accepted.contains(&unit),
                "{unit} is accepted by no mapped metric"
            );
        }
    }
    // The lake: the Glue table is the writer's schema (see the test above), and the
    // partition keys are the path's.
    assert_eq!(
        pulselake_lake::PARTITION_KEYS,
        ["metric", "year", "month", "day"]
    );
    assert!(
        pulselake_domain::Partition::of(Metric::Spo2, 0)
            .to_string()
            .starts_with("metric=spo2/year=1970/month=01/day=01")
    );
}

#[test]
fn a_device_certificate_may_connect_and_publish_only_as_its_own_thing() {
    let t = template();
    let policy = &t["Resources"]["DevicePolicy"]["Properties"]["PolicyDocument"];
    let thing = "${!iot:Connection.Thing.ThingName}";
    let mut granted = Vec::new();
    for st in statements(policy) {
        assert_eq!(st["Effect"].as_str(), Some("Allow"));
        let resource = text(&st["Resource"]);
        for action in actions(st) {
            granted.push(action.clone());
            match action.as_str() {
                "iot:Connect" => {
                    assert!(
                        resource.ends_with(&format!(":client/{thing}")),
                        "{resource}"
                    );
                    assert!(text(&st["Condition"]).contains("iot:Connection.Thing.IsAttached"));
                }
                "iot:Publish" => assert!(
                    resource.ends_with(&format!(":topic/pulselake/devices/{thing}/vitals")),
                    "{resource}"
                ),
                other => panic!("a device may not {other}"),
            }
            // No wildcard could reach another device's topic or client id.
            assert!(
                !resource.contains('*') && !resource.contains('+'),
                "{resource}"
            );
        }
    }
    granted.sort();
    assert_eq!(granted, ["iot:Connect", "iot:Publish"]);
    // The rule's partition key is the topic's device, what the functions compare with.
    let rule = &t["Resources"]["VitalsTopicRule"]["Properties"]["TopicRulePayload"];
    assert_eq!(
        text(&rule["Actions"][0]["Kinesis"]["PartitionKey"]),
        "${topic(3)}"
    );
    assert!(text(&rule["Sql"]).contains("'pulselake/devices/+/vitals'"));
}

#[test]
fn the_local_stack_gets_the_device_policy_the_template_declares() {
    let doc: serde_json::Value = serde_json::from_str(
        &pulselake_local::provision::device_policy_document(&template()),
    )
    .unwrap();
    let text = doc.to_string();
    assert!(
        !text.contains("!Sub") && !text.contains("${AWS::"),
        "{text}"
    );
    assert_eq!(
        doc["Statement"][1]["Resource"],
        "arn:aws:iot:eu-west-1:123456789012:topic/pulselake/devices/${iot:Connection.Thing.ThingName}/vitals"
    );
}

#[test]
fn every_checkov_skip_in_the_template_says_why() {
    let t = template();
    let mut skips = 0;
    for (name, r) in resources(&t) {
        for skip in r["Metadata"]["checkov"]["skip"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            skips += 1;
            let id = text(&skip["id"]);
            let why = text(&skip["comment"]);
            assert!(id.starts_with("CKV_"), "{name}: {id}");
            assert!(
                why.split_whitespace().count() >= 8,
                "{name} skips {id} without a reason: {why:?}"
            );
        }
    }
    assert!(skips > 0);
}

#[test]
fn the_alerts_topic_takes_subscriptions_only_from_the_endpoints_the_stack_names() {
    let t = template();
    let policy = &t["Resources"]["AlertsTopicPolicy"]["Properties"]["PolicyDocument"];
    let denies: Vec<String> = statements(policy)
        .iter()
        .filter(|st| {
            text(&st["Effect"]) == "Deny" && actions(st).contains(&"sns:Subscribe".to_owned())
        })
        .map(|st| text(&st["Condition"]))
        .collect();
    assert!(
        denies
            .iter()
            .any(|c| c.contains("sns:Protocol") && c.contains("AlertSubscriptionProtocols")),
        "{denies:?}"
    );
    assert!(
        denies
            .iter()
            .any(|c| c.contains("sns:Endpoint") && c.contains("AlertSubscriptionEndpoints")),
        "{denies:?}"
    );
    let f = &t["Resources"]["VitalsAlertFunction"]["Properties"];
    assert_eq!(
        text(&f["ReservedConcurrentExecutions"]),
        "!Ref AlertReservedConcurrency"
    );
    assert!(
        t["Parameters"]["OpsEmail"]["Default"].is_null(),
        "alarms must reach someone"
    );
}

#[test]
fn audit_records_are_locked_and_data_stores_outlive_the_stack() {
    let t = template();
    let audit = &t["Resources"]["AuditBucket"]["Properties"];
    assert_eq!(audit["ObjectLockEnabled"].as_bool(), Some(true));
    let rule = &audit["ObjectLockConfiguration"]["Rule"]["DefaultRetention"];
    assert_eq!(text(&rule["Mode"]), "COMPLIANCE");
    assert!(t["Parameters"]["AuditRetentionYears"]["MinValue"].as_u64() >= Some(6));
    let trail = &t["Resources"]["AuditTrail"]["Properties"];
    assert_eq!(trail["EnableLogFileValidation"].as_bool(), Some(true));
    let selectors = text(&trail["AdvancedEventSelectors"]);
    for data in [
        "LakeBucket",
        "StagingBucket",
        "ProcessedBucket",
        "QuarantineBucket",
        "DeviceRegistryTable",
        "SubjectAliasTable",
        "FileDedupTable",
    ] {
        assert!(selectors.contains(data), "no data events for {data}");
    }
    for ty in [
        "AWS::S3::Bucket",
        "AWS::DynamoDB::Table",
        "AWS::Logs::LogGroup",
        "AWS::KMS::Key",
        "AWS::SecretsManager::Secret",
    ] {
        for (name, r) in of_type(&t, ty) {
            assert_eq!(text(&r["DeletionPolicy"]), "Retain", "{name}");
            assert_eq!(text(&r["UpdateReplacePolicy"]), "Retain", "{name}");
        }
    }
    for (name, _) in of_type(&t, "AWS::SQS::Queue") {
        let covered = of_type(&t, "AWS::SQS::QueuePolicy").iter().any(|(_, p)| {
            text(&p["Properties"]["Queues"]).contains(&format!("!Ref {name}"))
                && statements(&p["Properties"]["PolicyDocument"])
                    .iter()
                    .any(|st| {
                        text(&st["Effect"]) == "Deny"
                            && text(&st["Condition"]["Bool"]["aws:SecureTransport"]) == "false"
                    })
        });
        assert!(covered, "{name} is TLS-only");
    }
}
