//! One error type for every AWS call, split the way callers need it: retry or not.

use std::fmt;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// A failed AWS call. `retryable` errors (throttling, 5xx, timeouts, network) are
/// worth another attempt; the others (missing resource, access denied, bad request)
/// are not, and callers surface them at once.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct AwsError {
    pub operation: &'static str,
    pub retryable: bool,
    pub code: Option<String>,
    pub message: String,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.retryable {
            "transient"
        } else {
            "permanent"
        };
        match &self.code {
            Some(code) => write!(
                f,
                "{} failed ({kind}, {code}): {}",
                self.operation, self.message
            ),
            None => write!(f, "{} failed ({kind}): {}", self.operation, self.message),
        }
    }
}

impl AwsError {
    pub fn permanent(operation: &'static str, message: impl Into<String>) -> AwsError {
        AwsError {
            operation,
            retryable: false,
            code: None,
            message: message.into(),
        }
    }

    pub fn transient(operation: &'static str, message: impl Into<String>) -> AwsError {
        AwsError {
            operation,
            retryable: true,
            code: None,
            message: message.into(),
        }
    }

    /// Classifies an SDK error. The SDK has already retried transient errors with its
    /// own backoff by the time one reaches here; callers may still retry within their budget.
    pub fn from_sdk<E>(operation: &'static str, err: SdkError<E, Response>) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match &err {
            SdkError::ServiceError(se) => {
                let status = se.raw().status().as_u16();
                let code = se.err().code().map(str::to_owned);
                let retryable = status >= 500
                    || status == 429
                    || code.as_deref().is_some_and(is_retryable_code);
                let message = se.err().message().unwrap_or("no message").to_owned();
                AwsError {
                    operation,
                    retryable,
                    code,
                    message,
                }
            }
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => AwsError {
                operation,
                retryable: true,
                code: None,
                message: error_chain(&err),
            },
            _ => AwsError {
                operation,
                retryable: false,
                code: None,
                message: error_chain(&err),
            },
        }
    }
}

fn is_retryable_code(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException"
            | "Throttling"
            | "ThrottledException"
            | "RequestLimitExceeded"
            | "ProvisionedThroughputExceededException"
            | "RequestThrottled"
            | "SlowDown"
            | "ServiceUnavailableException"
            | "ServiceUnavailable"
            | "InternalFailure"
            | "InternalServerError"
            | "InternalError"
            | "RequestTimeout"
            | "TransactionConflictException"
    )
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}
