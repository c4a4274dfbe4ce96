//! The one JSON error body every API error uses: `{code, message, fields?}`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Per-field validation messages, keyed by the JSON field name.
pub type FieldErrors = BTreeMap<String, String>;

/// Machine-readable error codes. Clients branch on these, never on `message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed in a way not covered by a more specific code.
    BadRequest,
    /// The body is not valid JSON, or not the JSON shape the endpoint expects.
    InvalidJson,
    /// The body is well-formed but one or more fields are invalid (see `fields`).
    ValidationFailed,
    /// The body's `Content-Type` is not one the endpoint accepts.
    UnsupportedMediaType,
    Unauthorized,
    Forbidden,
    /// Login refused until the address is confirmed through the emailed link.
    EmailNotVerified,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    TooManyRequests,
    /// The server failed; the cause is in its logs, never in the body.
    Internal,
    /// A dependency (usually the database) is unreachable; retrying later may work.
    Unavailable,
    /// The server took too long.
    Timeout,
    /// A code this build does not know (sent by a newer server).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::EmailNotVerified => "email_not_verified",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every API error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<FieldErrors>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            fields: None,
        }
    }

    pub fn validation(fields: FieldErrors) -> Self {
        ApiError {
            code: ErrorCode::ValidationFailed,
            message: "Some fields are invalid.".to_owned(),
            fields: Some(fields),
        }
    }

    /// The message for one field, if the server reported one.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.as_ref()?.get(name).map(String::as_str)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omits_fields_when_absent_and_keeps_them_when_present() {
        let plain = serde_json::to_value(ApiError::new(ErrorCode::NotFound, "nope")).unwrap();
        assert_eq!(
            plain,
            serde_json::json!({"code": "not_found", "message": "nope"})
        );

        let mut fields = FieldErrors::new();
        fields.insert("email".into(), "too long".into());
        let v = serde_json::to_value(ApiError::validation(fields)).unwrap();
        assert_eq!(v["code"], "validation_failed");
        assert_eq!(v["fields"]["email"], "too long");
    }

    #[test]
    fn unknown_codes_from_a_newer_server_still_decode() {
        let e: ApiError = serde_json::from_str(r#"{"code":"brand_new","message":"m"}"#).unwrap();
        assert_eq!(e.code, ErrorCode::Unknown);
    }

    #[test]
    fn as_str_matches_serde() {
        for code in [
            ErrorCode::InvalidJson,
            ErrorCode::PayloadTooLarge,
            ErrorCode::TooManyRequests,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }
}
