//! The partner side of `template.yaml` says what the code and `api/openapi.yaml` say:
//! the API is built from the OpenAPI document, every operation reaches partner-api,
//! the export queue is drained with item failures and a DLQ, exports expire, and the
//! pseudonym keys the CLI creates are the only secrets the functions may read.

use pulselake_local::cfn::{template, text, yaml};
use serde_norway::Value;

/// (method, path) of every operation in the OpenAPI document.
fn operations(api: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in api["paths"].as_mapping().unwrap() {
        for (method, op) in item.as_mapping().unwrap() {
            out.push((
                method.as_str().unwrap().to_uppercase(),
                path.as_str().unwrap().to_owned(),
                op,
            ));
        }
    }
    out
}

#[test]
fn the_api_is_built_from_the_openapi_document_and_every_operation_reaches_partner_api() {
    let t = template();
    let api = &t["Resources"]["PartnerApi"]["Properties"];
    let include = &api["DefinitionBody"]["Fn::Transform"];
    assert_eq!(text(&include["Name"]), "AWS::Include");
    assert_eq!(text(&include["Parameters"]["Location"]), "api/openapi.yaml");
    assert_eq!(text(&api["StageName"]), "v1");
    let function_name = text(&t["Resources"]["PartnerApiFunction"]["Properties"]["FunctionName"]);
    assert!(
        function_name.ends_with("${AWS::StackName}-partner-api"),
        "{function_name}"
    );

    let doc = yaml("api/openapi.yaml");
    let ops = operations(&doc);
    assert!(
        ops.len() >= 11,
        "{ops:?}",
        ops = ops.iter().map(|o| (&o.0, &o.1)).collect::<Vec<_>>()
    );
    for (method, path, op) in ops {
        let integration = &op["x-amazon-apigateway-integration"];
        assert_eq!(text(&integration["type"]), "aws_proxy", "{method} {path}");
        assert_eq!(text(&integration["httpMethod"]), "POST", "{method} {path}");
        let uri = text(&integration["uri"]["Fn::Sub"]);
        assert!(
            uri.ends_with("function:${AWS::StackName}-partner-api/invocations"),
            "{method} {path}: {uri}"
        );
    }
    // The invoke permission is bound to this API, and nothing else may call the function.
    let permission = &t["Resources"]["PartnerApiInvokePermission"]["Properties"];
    assert_eq!(text(&permission["Principal"]), "apigateway.amazonaws.com");
    assert!(text(&permission["SourceArn"]).contains("${PartnerApi}/*"));
}

#[test]
fn export_units_are_retried_per_item_then_dead_lettered_and_files_expire_in_7_days() {
    let t = template();
    let worker = &t["Resources"]["ExportWorkerFunction"]["Properties"];
    let ev = &worker["Events"]["ExportUnits"]["Properties"];
    assert_eq!(
        text(&ev["FunctionResponseTypes"]),
        "ReportBatchItemFailures"
    );
    assert_eq!(
        ev["BatchSize"].as_u64(),
        Some(1),
        "one lake partition per invocation"
    );
    let queue = &t["Resources"]["ExportQueue"]["Properties"];
    let timeout = worker["Timeout"].as_u64().unwrap();
    assert!(queue["VisibilityTimeout"].as_u64().unwrap() >= 6 * timeout);
    assert!(text(&queue["RedrivePolicy"]["deadLetterTargetArn"]).contains("ExportDeadLetterQueue"));
    let rules = &t["Resources"]["ExportsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"];
    assert_eq!(
        rules[0]["ExpirationInDays"].as_u64(),
        Some(7),
        "the manifest's Expires promises 7 days"
    );
    let jobs = &t["Resources"]["ExportJobsTable"]["Properties"]["TimeToLiveSpecification"];
    assert_eq!(text(&jobs["AttributeName"]), "expiration");
    let claims = &t["Resources"]["TokenClaimsTable"]["Properties"]["TimeToLiveSpecification"];
    assert_eq!(text(&claims["AttributeName"]), "expiration");
}

#[test]
fn the_functions_read_only_the_partners_pseudonym_keys_and_sign_with_a_kms_key() {
    let t = template();
    let prefix = pulselake_cli::StackNames::local("STACK").partner_secret_prefix;
    let expected = prefix.replace("STACK", "${AWS::StackName}");
    for role in ["PartnerApiRole", "ExportWorkerRole"] {
        let statements =
            &t["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"];
        let secrets: Vec<String> = statements
            .as_sequence()
            .unwrap()
            .iter()
            .filter(|s| text(&s["Action"]).contains("secretsmanager:"))
            .map(|s| text(&s["Resource"]))
            .collect();
        assert_eq!(secrets.len(), 1, "{role}");
        assert!(
            secrets[0].ends_with(&format!("secret:{expected}*")),
            "{role}: {secrets:?}"
        );
    }
    let key = &t["Resources"]["TokenSigningKey"]["Properties"];
    assert_eq!(text(&key["KeyUsage"]), "SIGN_VERIFY");
    assert_eq!(
        text(&key["KeySpec"]),
        "RSA_2048",
        "partner-api verifies RS256 with it"
    );
}

/// Statements of a role's inline policies.
fn statements<'a>(t: &'a Value, role: &str) -> Vec<&'a Value> {
    t["Resources"][role]["Properties"]["Policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|p| p["PolicyDocument"]["Statement"].as_sequence().unwrap())
        .collect()
}

fn actions(s: &Value) -> Vec<String> {
    match &s["Action"] {
        Value::Sequence(list) => list.iter().map(text).collect(),
        one => vec![text(one)],
    }
}

#[test]
fn only_the_partner_api_signs_tokens_it_names_key_versions_without_reading_keys_and_waf_guards_it()
{
    let t = template();
    let api: Vec<String> = statements(&t, "PartnerApiRole")
        .into_iter()
        .flat_map(actions)
        .collect();
    assert!(api.contains(&"secretsmanager:DescribeSecret".to_owned()));
    assert!(
        !api.iter().any(|a| a == "secretsmanager:GetSecretValue"),
        "the internet-facing role reads no pseudonym key: {api:?}"
    );
    assert!(
        check_worker_list_versions(&t),
        "the worker lists key versions for deletions"
    );
    // The key policy denies kms:Sign to every principal but the partner API's role.
    let key = &t["Resources"]["TokenSigningKey"]["Properties"]["KeyPolicy"]["Statement"];
    let deny = key
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| text(&s["Effect"]) == "Deny")
        .expect("a Deny statement");
    assert_eq!(actions(deny), ["kms:Sign"]);
    let principal = format!("{:?}", deny["Condition"]["ArnNotLike"]["aws:PrincipalArn"]);
    assert!(
        principal.contains("role/${AWS::StackName}-PartnerApiRole-*"),
        "{principal}"
    );
    // A WAF web ACL with rate-based rules stands before the API stage.
    let acl = &t["Resources"]["PartnerApiWebAcl"]["Properties"];
    let rules = acl["Rules"].as_sequence().unwrap();
    let token_rule = rules
        .iter()
        .find(|r| !r["Statement"]["RateBasedStatement"]["ScopeDownStatement"].is_null())
        .expect("a rate-based rule on the token endpoint");
    assert_eq!(
        text(
            &token_rule["Statement"]["RateBasedStatement"]["ScopeDownStatement"]["ByteMatchStatement"]
                ["SearchString"]
        ),
        "/auth/token"
    );
    let association = &t["Resources"]["PartnerApiWebAclAssociation"]["Properties"];
    assert!(format!("{:?}", association["ResourceArn"]).contains("PartnerApi"));
}

fn check_worker_list_versions(t: &Value) -> bool {
    statements(t, "ExportWorkerRole")
        .into_iter()
        .flat_map(actions)
        .any(|a| a == "secretsmanager:ListSecretVersionIds")
}
