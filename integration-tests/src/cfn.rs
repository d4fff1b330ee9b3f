//! `template.yaml` (and the files it includes) read as data, for the tests that hold
//! the template to the code.

use serde_norway::Value;

use crate::moto::workspace_root;

pub fn template() -> Value {
    let text = std::fs::read_to_string(workspace_root().join("template.yaml")).unwrap();
    serde_norway::from_str(&text).unwrap()
}

pub fn resources(t: &Value) -> Vec<(String, &Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v))
        .collect()
}

pub fn of_type<'t>(t: &'t Value, ty: &str) -> Vec<(String, &'t Value)> {
    resources(t)
        .into_iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(ty))
        .collect()
}

/// The text of a YAML value, looking through short-form intrinsics like `!Ref X`.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Tagged(t) => format!("{} {}", t.tag, text(&t.value)),
        Value::Sequence(s) => s.iter().map(text).collect::<Vec<_>>().join(","),
        other => serde_norway::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// A YAML file of the workspace, parsed (e.g. `api/openapi.yaml`).
pub fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(workspace_root().join(path)).unwrap();
    serde_norway::from_str(&text).unwrap()
}
