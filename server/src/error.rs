//! The server's one error type and its one mapping to HTTP.
//!
//! Every handler returns `Result<_, Error>`; this file alone decides the status code and the JSON body
//! (`shared::ApiError`). Client errors carry their message; server errors are logged with their cause
//! and answer a generic message.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shared::{ApiError, ErrorCode, FieldErrors};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A client error with its status, code and message, shown to the client as is.
    #[error("{status}: {body}")]
    Client { status: StatusCode, body: ApiError },
    /// 429 with `Retry-After`.
    #[error("too many requests; retry after {retry_after_secs} s")]
    TooManyRequests {
        retry_after_secs: u64,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another role (reached over HTTP) could not be reached (503), did not answer in time (504) or
    /// answered wrongly (502); the body names the role.
    #[error("the {role} service failed ({failure:?}): {detail}")]
    Upstream {
        role: String,
        failure: UpstreamFailure,
        detail: String,
    },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a call to another role failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// No connection could be made (the role is down, or restarting): 503.
    Unreachable,
    /// It did not answer in time: 504.
    Timeout,
    /// It answered something unusable, or the connection broke mid-answer: 502.
    BadAnswer,
}

impl Error {
    pub fn client(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Client {
            status,
            body: ApiError::new(code, message),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Error::client(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    pub fn validation(fields: FieldErrors) -> Self {
        Error::Client {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: ApiError::validation(fields),
        }
    }

    pub fn method_not_allowed() -> Self {
        Error::client(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            "This method is not allowed here.",
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Error::client(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Error::client(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Error::client(StatusCode::CONFLICT, ErrorCode::Conflict, message)
    }

    pub fn timeout() -> Self {
        Error::client(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::Timeout,
            "The request took too long.",
        )
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::Client { status, .. } => *status,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Store(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            Error::Store(e) if e.is_storage_full() => StatusCode::INSUFFICIENT_STORAGE,
            Error::Store(e) if e.is_unique_violation() => StatusCode::CONFLICT,
            Error::Upstream { failure, .. } => match failure {
                UpstreamFailure::Unreachable => StatusCode::SERVICE_UNAVAILABLE,
                UpstreamFailure::Timeout => StatusCode::GATEWAY_TIMEOUT,
                UpstreamFailure::BadAnswer => StatusCode::BAD_GATEWAY,
            },
            Error::Store(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> ApiError {
        match self {
            Error::Client { body, .. } => body.clone(),
            Error::TooManyRequests { message, .. } => {
                ApiError::new(ErrorCode::TooManyRequests, message.clone())
            }
            Error::Store(e) if e.is_unavailable() => ApiError::new(
                ErrorCode::Unavailable,
                "The database is unavailable; try again shortly.",
            ),
            Error::Store(e) if e.is_storage_full() => ApiError::new(
                ErrorCode::Unavailable,
                "The server's storage is full, so nothing was changed. Try again later.",
            ),
            Error::Store(e) if e.is_unique_violation() => {
                ApiError::new(ErrorCode::Conflict, "That already exists.")
            }
            Error::Upstream { role, failure, .. } => match failure {
                UpstreamFailure::Unreachable => ApiError::new(
                    ErrorCode::Unavailable,
                    format!("The {role} service is unavailable; try again shortly."),
                ),
                UpstreamFailure::Timeout => ApiError::new(
                    ErrorCode::Timeout,
                    format!("The {role} service did not answer in time."),
                ),
                UpstreamFailure::BadAnswer => ApiError::new(
                    ErrorCode::Unavailable,
                    format!("The {role} service failed; try again shortly."),
                ),
            },
            Error::Store(_) | Error::Internal(_) => {
                ApiError::new(ErrorCode::Internal, "Something went wrong on our side.")
            }
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            Error::TooManyRequests {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let on_database = matches!(&self, Error::Store(e) if !e.is_unique_violation());
        let mut response = (status, axum::Json(self.body())).into_response();
        if on_database {
            response
                .extensions_mut()
                .insert(crate::telemetry::DatabaseFailure);
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        }
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs.max(1)));
        }
        response
    }
}

/// `Json` whose rejections answer in our error shape rather than axum's plain text.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(rejection.into()),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl From<JsonRejection> for Error {
    fn from(rejection: JsonRejection) -> Self {
        let (status, code, message) = match &rejection {
            JsonRejection::MissingJsonContentType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "Send the body as JSON with `Content-Type: application/json`.".to_owned(),
            ),
            JsonRejection::JsonSyntaxError(e) => (
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidJson,
                e.body_text(),
            ),
            JsonRejection::JsonDataError(e) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InvalidJson,
                e.body_text(),
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                "The request body is too large.".to_owned(),
            ),
            other => (other.status(), ErrorCode::BadRequest, other.body_text()),
        };
        Error::client(status, code, message)
    }
}
