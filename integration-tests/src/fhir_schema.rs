//! Two FHIR validators nobody here wrote, for what partners receive: HL7's FHIR R4 JSON
//! Schema (fetched into the venv by `make venv`) applied with the venv's pinned
//! `jsonschema`, and the `fhir.resources` R4B models (pydantic; `.venv-partners`).
//! Every resource is validated as its `resourceType`.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::Result;
use crate::moto::{partners_venv_bin, venv_bin};

/// The problems HL7's schema finds, one line each (`<index>: <path>: <message>`);
/// empty when every resource is valid.
pub fn problems(resources: &[serde_json::Value]) -> Result<Vec<String>> {
    const SCRIPT: &str = r##"
import json, sys
from jsonschema import Draft6Validator
schema = json.load(open(sys.argv[1]))
validators = {}
out = []
for i, line in enumerate(sys.stdin):
    r = json.loads(line)
    t = r.get("resourceType")
    if t not in schema["definitions"]:
        out.append(f"{i}: resourceType {t!r} is not a FHIR R4 resource")
        continue
    if t not in validators:
        validators[t] = Draft6Validator({"definitions": schema["definitions"], "$ref": f"#/definitions/{t}"})
    for e in validators[t].iter_errors(r):
        # The schema was generated from R4 4.0.0; 4.0.1 (R4's technical correction,
        # the version servers state today) is missing from its version list.
        if list(e.absolute_path) == ["fhirVersion"] and e.instance == "4.0.1":
            continue
        out.append(f"{i}: {'/'.join(map(str, e.absolute_path))}: {e.message[:200]}")
print(json.dumps(out))
"##;
    let schema = venv_bin("python")
        .parent()
        .and_then(|bin| bin.parent())
        .map(|venv| venv.join("fhir.schema.json"))
        .ok_or("no venv")?;
    if !schema.exists() {
        return Err(format!("{} is missing (run `make venv`)", schema.display()).into());
    }
    run(
        &venv_bin("python"),
        SCRIPT,
        &[schema.as_os_str()],
        resources,
    )
}

/// The problems the `fhir.resources` R4B models find, one line each
/// (`<index>: <message>`); empty when every resource is valid.
pub fn model_problems(resources: &[serde_json::Value]) -> Result<Vec<String>> {
    const SCRIPT: &str = r#"
import json, sys
from fhir.resources.R4B import get_fhir_model_class
out = []
for i, line in enumerate(sys.stdin):
    r = json.loads(line)
    try:
        get_fhir_model_class(r.get("resourceType", "")).model_validate(r)
    except Exception as e:
        out.append(f"{i}: {' '.join(str(e).split())[:300]}")
print(json.dumps(out))
"#;
    run(&partners_venv_bin("python"), SCRIPT, &[], resources)
}

fn run(
    python: &std::path::Path,
    script: &str,
    args: &[&std::ffi::OsStr],
    resources: &[serde_json::Value],
) -> Result<Vec<String>> {
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run the venv's python (run `make venv`): {e}"))?;
    {
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        for r in resources {
            serde_json::to_writer(&mut stdin, r)?;
            stdin.write_all(b"\n")?;
        }
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(format!(
            "FHIR schema validation failed to run: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}
