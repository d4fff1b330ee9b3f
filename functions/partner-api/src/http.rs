//! The API's requests and responses, free of the Lambda event types (converted at the
//! edge, in `lib.rs`): what the routes read and write, and FHIR's error body.

use serde::Serialize;

/// An HTTP request as the API sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    pub method: String,
    /// The path without the stage (`/fhir/$export`).
    pub path: String,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// API Gateway's request id: audit records point at it.
    pub request_id: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(status: u16, body: &impl Serialize) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_string(body).unwrap_or_default(),
        }
    }

    pub fn fhir(status: u16, body: &impl Serialize) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "application/fhir+json".into())],
            body: serde_json::to_string(body).unwrap_or_default(),
        }
    }

    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// A failure of the platform (an AWS call): `500` with an OperationOutcome, the
    /// cause in the log (no identifiers), nothing of it in the response.
    pub fn server_error(e: &pulselake_adapters::AwsError) -> Response {
        tracing::error!(error = %e, "a request failed");
        Response::outcome(
            500,
            "exception",
            "the server could not finish the request; try again later",
        )
    }

    /// A FHIR `OperationOutcome` with one issue (`code` from FHIR's issue-type values).
    pub fn outcome(status: u16, code: &str, diagnostics: &str) -> Response {
        Response::fhir(status, &operation_outcome(code, diagnostics))
    }
}

/// A FHIR `OperationOutcome` with one issue: an `informational` one (what a policy
/// withheld) has severity `information`, every other code `error`.
pub fn operation_outcome(code: &str, diagnostics: &str) -> serde_json::Value {
    let severity = if code == "informational" {
        "information"
    } else {
        "error"
    };
    serde_json::json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}]
    })
}

/// `name=value` pairs of a form body or query string, percent-decoded (`+` is a space).
pub fn form_pairs(text: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_are_decoded_pair_by_pair() {
        let pairs =
            form_pairs("grant_type=client_credentials&scope=system%2FObservation.rs+x&flag");
        assert_eq!(
            pairs,
            [
                ("grant_type".to_owned(), "client_credentials".to_owned()),
                ("scope".to_owned(), "system/Observation.rs x".to_owned()),
                ("flag".to_owned(), String::new())
            ]
        );
    }
}
