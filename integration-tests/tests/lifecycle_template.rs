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
fn erasure_runs_daily_alone_over_the_table_the_cli_writes_and_can_remove_old_versions() {
    let t = template();
    let f = &t["Resources"]["ErasureFunction"]["Properties"];
    assert_eq!(
        f["ReservedConcurrentExecutions"].as_u64(),
        Some(1),
        "one pass at a time"
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
        "dynamodb:Scan",
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
