//! The lake's lifecycle in `template.yaml`: kept by measurement date by the retention
//! function, never expired by upload age, and no parameter can shorten the 3 years.

use pulselake_domain::retention::MIN_RETENTION_YEARS;
use pulselake_local::cfn::{template, text};

#[test]
fn no_parameter_can_keep_less_than_three_years_and_the_lake_never_expires_by_upload_age() {
    let t = template();
    let days = &t["Parameters"]["RetentionDays"];
    assert!(
        days["MinValue"].as_u64().unwrap() >= 1096,
        "3 years with a leap day"
    );
    assert!(days["Default"].as_u64().unwrap() >= 1096);
    let years = &t["Parameters"]["LakeRetentionYears"];
    assert_eq!(
        years["MinValue"].as_u64(),
        Some(u64::from(MIN_RETENTION_YEARS))
    );
    let rules = t["Resources"]["LakeBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
        .as_sequence()
        .unwrap();
    for rule in rules {
        assert!(
            rule["ExpirationInDays"].is_null() && rule["ExpirationDate"].is_null(),
            "the lake must not expire current files by upload age: {rule:?}"
        );
    }
}

#[test]
fn the_retention_function_runs_daily_alone_with_the_configured_years() {
    let t = template();
    let f = &t["Resources"]["RetentionFunction"]["Properties"];
    assert_eq!(
        text(&f["Environment"]["Variables"]["RETENTION_YEARS"]),
        "!Ref LakeRetentionYears"
    );
    assert_eq!(
        f["ReservedConcurrentExecutions"].as_u64(),
        Some(1),
        "one run at a time"
    );
    let schedule = text(&f["Events"]["Daily"]["Properties"]["ScheduleExpression"]);
    assert!(
        schedule.starts_with("cron(") && schedule.ends_with(" * * ? *)"),
        "{schedule}"
    );
}

#[test]
fn erasure_plans_daily_fans_out_per_partition_over_its_queue_and_can_remove_old_versions() {
    let t = template();
    let f = &t["Resources"]["ErasureFunction"]["Properties"];
    let units = &f["Events"]["Units"]["Properties"];
    assert_eq!(text(&units["Queue"]), "!GetAtt ErasureQueue.Arn");
    assert_eq!(
        units["BatchSize"].as_u64(),
        Some(1),
        "a unit is a partition"
    );
    let fan_out = units["ScalingConfig"]["MaximumConcurrency"]
        .as_u64()
        .unwrap();
    assert_eq!(
        f["ReservedConcurrentExecutions"].as_u64(),
        Some(fan_out + 1),
        "the units at once, and the daily plan"
    );
    let queue = &t["Resources"]["ErasureQueue"]["Properties"];
    assert_eq!(
        text(&queue["RedrivePolicy"]["deadLetterTargetArn"]),
        "!GetAtt ErasureDeadLetterQueue.Arn"
    );
    assert!(
        queue["VisibilityTimeout"].as_u64().unwrap() >= 6 * f["Timeout"].as_u64().unwrap(),
        "AWS's advice: 6x the function timeout"
    );
    for (var, value) in [
        ("PASSES_TABLE", "!Ref ErasurePassesTable"),
        ("ERASURE_QUEUE_URL", "!Ref ErasureQueue"),
    ] {
        assert_eq!(text(&f["Environment"]["Variables"][var]), value);
    }
    let rg = t["Resources"]["LakeDeliveryStream"]["Properties"]["ExtendedS3DestinationConfiguration"]
        ["DataFormatConversionConfiguration"]["OutputFormatConfiguration"]["Serializer"]
        ["ParquetSerDe"]["BlockSizeBytes"]
        .as_u64();
    assert_eq!(
        rg,
        Some(64 << 20),
        "Firehose's row groups bound erasure's memory"
    );
    assert_eq!(
        text(&f["Environment"]["Variables"]["ERASURE_TABLE"]),
        "!Ref ErasureRequestsTable"
    );
    let table = text(&t["Resources"]["ErasureRequestsTable"]["Properties"]["TableName"]);
    let cli = pulselake_cli::StackNames::local("STACK").erasure_table;
    assert_eq!(
        table,
        format!("!Sub {}", cli.replace("STACK", "${AWS::StackName}"))
    );
    let actions = text(
        &t["Resources"]["ErasureRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"],
    );
    for needed in [
        "s3:ListBucketVersions",
        "s3:DeleteObjectVersion",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "dynamodb:Scan",
        "sqs:SendMessage",
        "sqs:ReceiveMessage",
    ] {
        assert!(actions.contains(needed), "{needed}");
    }
    let schedule = text(&f["Events"]["Daily"]["Properties"]["ScheduleExpression"]);
    assert!(schedule.ends_with(" * * ? *)"), "daily: {schedule}");
}

#[test]
fn compaction_runs_daily_alone_and_may_touch_only_the_lake_and_its_plans() {
    let t = template();
    let f = &t["Resources"]["CompactionFunction"]["Properties"];
    assert!(
        f["EphemeralStorage"]["Size"].as_u64().unwrap() >= 4096,
        "a busy day's spill files fit in /tmp"
    );
    assert_eq!(
        f["ReservedConcurrentExecutions"].as_u64(),
        Some(1),
        "one swap at a time"
    );
    let statements = text(
        &t["Resources"]["CompactionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"],
    );
    assert!(statements.contains(compaction::compact::PLANS_PREFIX));
    assert!(statements.contains("s3:DeleteObjectVersion"));
    assert!(
        !statements.contains("dynamodb:"),
        "compaction reads no table"
    );
}

#[test]
fn every_output_the_cli_reads_is_declared() {
    let t = template();
    for name in pulselake_cli::stack::STACK_OUTPUTS {
        assert!(
            !t["Outputs"][name]["Value"].is_null(),
            "the CLI reads output {name}; template.yaml must declare it"
        );
    }
}

#[test]
fn what_no_subject_stands_behind_is_quarantined_for_days_and_file_ingest_knows_the_lake_s_years() {
    let t = template();
    let rules = t["Resources"]["QuarantineBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
        .as_sequence()
        .unwrap();
    let prefix = stream_ingest::handler::UNATTRIBUTED_PREFIX;
    let rule = rules
        .iter()
        .find(|r| r["Prefix"].as_str() == Some(prefix))
        .expect("a rule for the prefix stream-ingest writes unattributed records under");
    assert_eq!(
        text(&rule["ExpirationInDays"]),
        "!Ref UnattributedQuarantineDays"
    );
    let days = &t["Parameters"]["UnattributedQuarantineDays"];
    assert!(days["MaxValue"].as_u64().unwrap() <= 30, "days, not years");
    let policy =
        serde_json::to_string(&t["Resources"]["StreamIngestRole"]["Properties"]["Policies"])
            .unwrap();
    assert!(policy.contains(&format!("/{prefix}*")), "{policy}");
    let f = &t["Resources"]["FileIngestFunction"]["Properties"];
    assert_eq!(
        text(&f["Environment"]["Variables"]["LAKE_RETENTION_YEARS"]),
        "!Ref LakeRetentionYears"
    );
}
