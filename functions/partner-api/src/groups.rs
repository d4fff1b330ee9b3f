//! `Group` read and search: the cohorts a partner's policy names, so a client can find
//! the Group ids it may export. A Group here is a cohort's name and nothing else: no
//! members, no size.

use pulselake_adapters::Partner;

use crate::config::Settings;
use crate::http::Response;

fn granted(partner: &Partner) -> impl Iterator<Item = &str> {
    partner
        .policy
        .cohorts
        .iter()
        .map(String::as_str)
        .filter(|c| *c != "*")
}

fn group(cohort: &str) -> serde_json::Value {
    serde_json::json!({
        "resourceType": "Group",
        "id": cohort,
        "type": "person",
        "actual": true,
        "name": cohort,
    })
}

/// `GET /fhir/Group/{id}`: a cohort the policy names; any other id is `404`, the same
/// whether or not the cohort exists.
pub fn read(partner: &Partner, id: &str) -> Response {
    match granted(partner).find(|c| *c == id) {
        Some(c) => Response::fhir(200, &group(c)),
        None => Response::outcome(404, "not-found", "no such Group"),
    }
}

/// `GET /fhir/Group`: every cohort the policy names, as a search set. A policy over
/// every subject (`*`) names none: its partner exports at system level.
pub fn search(partner: &Partner, settings: &Settings) -> Response {
    let base = settings.fhir_base();
    let entries: Vec<serde_json::Value> = granted(partner)
        .map(|c| {
            serde_json::json!({
                "fullUrl": format!("{base}/Group/{c}"),
                "resource": group(c),
                "search": {"mode": "match"},
            })
        })
        .collect();
    Response::fhir(
        200,
        &serde_json::json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "total": entries.len(),
            "link": [{"relation": "self", "url": format!("{base}/Group")}],
            "entry": entries,
        }),
    )
}
