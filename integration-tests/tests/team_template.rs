//! The team side of `template.yaml`: Lake Formation's grants are in effect (no
//! `IAMAllowedPrincipals` defaults for new databases and tables, none on the lake
//! database, the lake location registered with its own role and no hybrid access), the
//! stack's own catalog users are granted in Lake Formation, team roles reach the lake only
//! through it and only their own workgroup and results, and the team admin manages only
//! team resources.

use pulselake_local::cfn::{of_type, template, text};
use serde_norway::Value;

fn statements(policy: &Value) -> Vec<&Value> {
    policy["Statement"].as_sequence().unwrap().iter().collect()
}

#[test]
fn lake_formation_grants_are_in_effect_for_the_lake() {
    let t = template();
    let r = &t["Resources"];
    let settings = &r["LakeFormationSettings"];
    assert_eq!(
        text(&settings["Type"]),
        "AWS::LakeFormation::DataLakeSettings"
    );
    let p = &settings["Properties"];
    assert_eq!(
        text(&p["MutationType"]),
        "APPEND",
        "the account's other admins stay"
    );
    for key in [
        "CreateDatabaseDefaultPermissions",
        "CreateTableDefaultPermissions",
    ] {
        assert_eq!(
            p[key].as_sequence().map(Vec::len),
            Some(0),
            "{key}: no IAMAllowedPrincipals default"
        );
    }
    assert!(text(&p["Admins"]).contains("TeamAdminRole"));

    // The lake database: created after those settings, with no table defaults of its own.
    let db = &r["LakeDatabase"];
    assert_eq!(text(&db["DependsOn"]), "LakeFormationSettings");
    assert_eq!(
        db["Properties"]["DatabaseInput"]["CreateTableDefaultPermissions"]
            .as_sequence()
            .map(Vec::len),
        Some(0)
    );

    // The lake location: registered with its own role, no service-linked role, no hybrid mode.
    let loc = &r["LakeLocation"]["Properties"];
    assert_eq!(
        text(&r["LakeLocation"]["Type"]),
        "AWS::LakeFormation::Resource"
    );
    assert!(text(&loc["ResourceArn"]).contains("${LakeBucket.Arn}/readings"));
    assert!(text(&loc["RoleArn"]).contains("LakeLocationRole"));
    assert_eq!(loc["UseServiceLinkedRole"].as_bool(), Some(false));
    assert_eq!(loc["HybridAccessEnabled"].as_bool(), Some(false));
    let trust = text(&r["LakeLocationRole"]["Properties"]["AssumeRolePolicyDocument"]);
    assert!(trust.contains("lakeformation.amazonaws.com"), "{trust}");

    // Nothing anywhere grants to the IAMAllowedPrincipals group.
    let whole = serde_norway::to_string(&t).unwrap();
    assert!(!whole.contains("IAM_ALLOWED_PRINCIPALS"));
}

#[test]
fn the_stacks_own_catalog_users_hold_lake_formation_grants() {
    let t = template();
    let granted: Vec<String> = of_type(&t, "AWS::LakeFormation::PrincipalPermissions")
        .iter()
        .map(|(_, g)| {
            let p = &g["Properties"];
            format!(
                "{} {}",
                text(&p["Principal"]["DataLakePrincipalIdentifier"]),
                text(&p["Permissions"])
            )
        })
        .collect();
    // Every role whose IAM policy touches the catalog's partitions or table has its grant.
    for (role, needed) in [
        ("FirehoseRole", "DESCRIBE,SELECT"),
        ("CatalogSyncRole", "DESCRIBE,INSERT,DELETE"),
        ("RetentionRole", "DESCRIBE,DELETE"),
    ] {
        assert!(
            granted
                .iter()
                .any(|g| g.contains(role) && g.ends_with(needed)),
            "{role}: {granted:?}"
        );
    }
    for (name, role) in of_type(&t, "AWS::IAM::Role") {
        let uses_glue = text(&role["Properties"]["Policies"]).contains("glue:Batch")
            || text(&role["Properties"]["Policies"]).contains("glue:GetTableVersion");
        if uses_glue {
            assert!(
                granted.iter().any(|g| g.contains(&name)),
                "{name} uses the catalog without a grant"
            );
        }
    }
}

#[test]
fn team_roles_reach_the_lake_only_through_lake_formation_and_only_their_own_workgroup() {
    let t = template();
    let policy = &t["Resources"]["TeamQueryPolicy"]["Properties"]["PolicyDocument"];
    for s in statements(policy) {
        let resource = text(&s["Resource"]);
        assert!(
            !resource.contains("LakeBucket"),
            "no S3 permission on the lake: {resource}"
        );
        let actions = text(&s["Action"]);
        if actions.contains("athena:") {
            assert!(
                resource.ends_with("workgroup/pulselake-team-${!aws:PrincipalTag/pulselake-team}"),
                "{resource}"
            );
        }
        if actions.contains("s3:GetObject") || actions.contains("s3:PutObject") {
            assert!(
                resource.ends_with("/teams/${!aws:PrincipalTag/pulselake-team}/*"),
                "{resource}"
            );
        }
    }
    let admin = &t["Resources"]["TeamAdminRole"]["Properties"]["Policies"];
    let admin = &admin.as_sequence().unwrap()[0]["PolicyDocument"];
    for s in statements(admin) {
        let actions = text(&s["Action"]);
        let resource = text(&s["Resource"]);
        if actions.contains("athena:") {
            assert!(
                resource.ends_with("workgroup/pulselake-team-*"),
                "{resource}"
            );
        }
        if actions.contains("cloudwatch:PutMetricAlarm") {
            assert!(
                resource.ends_with("alarm:pulselake-team-*-budget"),
                "{resource}"
            );
        }
        if actions.contains("s3:") {
            assert!(resource.ends_with("records/kind=teams/*"), "{resource}");
        }
    }
    // The readings table's Glue columns carry the cohort team filters select on.
    let columns = text(
        &t["Resources"]["ReadingsTable"]["Properties"]["TableInput"]["StorageDescriptor"]["Columns"],
    );
    assert!(columns.contains("cohort"), "{columns}");
}
