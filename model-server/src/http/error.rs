//! The one table from failures to HTTP answers: every error is a JSON [`ErrorResponse`] with a
//! status code, overload adds `Retry-After`, and a timeout (408) closes the connection.

use crate::infer::InferError;
use crate::tokenize::TokenizeError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use loadgate_api::embed::{ErrorResponse, ErrorType};

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable class.
    pub error_type: ErrorType,
    /// What went wrong, for a person.
    pub message: String,
    /// Seconds for `Retry-After` (429 and 503).
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// A 4xx validation error.
    pub fn validation(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type: ErrorType::Validation,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 503 while the model loads.
    pub fn not_ready() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error_type: ErrorType::NotReady,
            message: "the model is still loading; poll GET /health until it answers 200".to_owned(),
            retry_after: Some(1),
        }
    }
}

impl From<InferError> for ApiError {
    fn from(error: InferError) -> Self {
        let message = error.to_string();
        match error {
            InferError::Overloaded { .. } => Self {
                status: StatusCode::TOO_MANY_REQUESTS,
                error_type: ErrorType::Overloaded,
                message,
                retry_after: Some(1),
            },
            InferError::Empty => Self::validation(StatusCode::UNPROCESSABLE_ENTITY, message),
            InferError::TooManyTexts { .. }
            | InferError::Tokenize(TokenizeError::TooLong { .. }) => {
                Self::validation(StatusCode::PAYLOAD_TOO_LARGE, message)
            }
            InferError::Tokenize(TokenizeError::Tokenizer(_)) => {
                Self::validation(StatusCode::UNPROCESSABLE_ENTITY, message)
            }
            InferError::Backend(_) => Self {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                error_type: ErrorType::Backend,
                message,
                retry_after: None,
            },
            InferError::ShuttingDown => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                error_type: ErrorType::NotReady,
                message,
                retry_after: Some(1),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse {
            error: self.message,
            error_type: self.error_type,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        // A 408 says the server gave up waiting (RFC 9110 15.5.9 asks for `close`): after a body
        // timed out half-read the connection cannot carry another request anyway.
        if self.status == StatusCode::REQUEST_TIMEOUT {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
