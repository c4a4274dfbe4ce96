//! `POST /api/client-errors`: the SPA reports its own failures (panics, unexpected API answers) so
//! that operators see them in the server log. Limits are here so the app can trim before sending.

use serde::{Deserialize, Serialize};

use crate::error::FieldErrors;

pub const MAX_MESSAGE_CHARS: usize = 4_000;
pub const MAX_URL_CHARS: usize = 2_048;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientErrorReport {
    /// What went wrong, as the app saw it.
    pub message: String,
    /// The page the user was on.
    pub url: String,
}

impl ClientErrorReport {
    /// Builds a report that always passes [`ClientErrorReport::validate`], trimming overlong text.
    pub fn trimmed(message: &str, url: &str) -> Self {
        let message = if message.trim().is_empty() {
            "(empty message)"
        } else {
            message
        };
        ClientErrorReport {
            message: message.chars().take(MAX_MESSAGE_CHARS).collect(),
            url: url.chars().take(MAX_URL_CHARS).collect(),
        }
    }

    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut fields = FieldErrors::new();
        if self.message.trim().is_empty() {
            fields.insert("message".into(), "must not be empty".into());
        } else if self.message.chars().count() > MAX_MESSAGE_CHARS {
            fields.insert(
                "message".into(),
                format!("must be at most {MAX_MESSAGE_CHARS} characters"),
            );
        }
        if self.url.chars().count() > MAX_URL_CHARS {
            fields.insert(
                "url".into(),
                format!("must be at most {MAX_URL_CHARS} characters"),
            );
        }
        if fields.is_empty() {
            Ok(())
        } else {
            Err(fields)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimmed_reports_always_validate() {
        let long = "x".repeat(MAX_MESSAGE_CHARS * 2);
        assert!(ClientErrorReport::trimmed(&long, &long).validate().is_ok());
        assert!(ClientErrorReport::trimmed("  ", "/").validate().is_ok());
    }

    #[test]
    fn rejects_empty_and_overlong_fields() {
        let r = ClientErrorReport {
            message: " ".into(),
            url: "u".repeat(MAX_URL_CHARS + 1),
        };
        let fields = r.validate().unwrap_err();
        assert!(fields.contains_key("message"));
        assert!(fields.contains_key("url"));
    }
}
