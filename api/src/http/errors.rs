//! Errors as the client sees them, mapped in one place: application
//! errors become HTTP statuses and stable codes here; internal causes are
//! logged, never sent.

use actix_web::dev::ServiceResponse;
use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use custodia_application::commands::account::LinkError;
use custodia_application::commands::credentials::LoginError;
use custodia_application::commands::sessions::SessionFailure;
use custodia_application::commands::CommandError;
use custodia_domain::Timestamp;

/// An error as the client sees it: an HTTP status and a stable code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The stable code (`UNAUTHENTICATED`, `FORBIDDEN`, …).
    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error as a GraphQL response (`{"errors": [...]}`, the code in
    /// `extensions`), with the same status: what `/graphql` answers.
    pub(crate) fn graphql_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(serde_json::json!({ "errors": [{
            "message": self.message,
            "extensions": { "code": self.code },
        }] }))
    }

    /// Tells the client when to try again (`Retry-After`, seconds).
    pub(crate) fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub(crate) fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "internal error",
        )
    }
}

/// An error and every error it came from, `: `-separated, for the log.
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response
            .json(serde_json::json!({ "error": { "code": self.code, "message": self.message } }))
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        use CommandError as E;
        match error {
            E::Forbidden(denied) => {
                ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", denied.to_string())
            }
            E::Invalid(invalid) => {
                ApiError::new(StatusCode::BAD_REQUEST, "VALIDATION", invalid.to_string())
            }
            E::NotFound(what) => ApiError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                format!("{what} not found"),
            ),
            E::ApiKey(custodia_domain::identity::api_key::ApiKeyError::NotFound) => {
                ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "API key not found")
            }
            E::User(custodia_domain::identity::user::UserError::NotFound) => {
                ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "user not found")
            }
            E::StaleVersion { .. } | E::Conflict(_) | E::EmailTaken => {
                ApiError::new(StatusCode::CONFLICT, "CONFLICT", error.to_string())
            }
            E::TenantSuspended => {
                ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", error.to_string())
            }
            E::Tenant(_)
            | E::User(_)
            | E::Membership(_)
            | E::Credential(_)
            | E::Session(_)
            | E::ApiKey(_)
            | E::AccessData(_) => {
                ApiError::new(StatusCode::CONFLICT, "CONFLICT", error.to_string())
            }
            E::Contended => {
                ApiError::new(StatusCode::CONFLICT, "CONCURRENCY", error.to_string()).retry_after(1)
            }
            E::LinkLimit => ApiError {
                retry_after: Some(600),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RATE_LIMITED",
                    error.to_string(),
                )
            },
            E::Busy => ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RATE_LIMITED",
                    error.to_string(),
                )
            },
            // Sealing for an erased subject (a command on them, or one that
            // raced their erasure) is refused, not a failure.
            E::Vault(custodia_application::VaultError::Erased) => {
                ApiError::new(StatusCode::CONFLICT, "CONFLICT", error.to_string())
            }
            E::Vault(_) | E::Schema(_) | E::Store(_) => ApiError::internal(&Chain(&error)),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(error: LoginError) -> Self {
        let unauthenticated =
            |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message);
        match error {
            LoginError::InvalidCredentials => unauthenticated("invalid credentials"),
            LoginError::SecondFactorRequired => unauthenticated("a one-time code is required"),
            LoginError::SecondFactorEnrollmentRequired => {
                unauthenticated("the tenant requires a second factor; enroll one first")
            }
            LoginError::EmailNotVerified => ApiError::new(
                StatusCode::FORBIDDEN,
                "EMAIL_NOT_VERIFIED",
                "the email address is not verified yet; follow the link sent to it",
            ),
            LoginError::TenantSuspended => ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "the tenant is suspended",
            ),
            LoginError::Locked { until } => {
                let seconds = (until.0 - Timestamp::now().0).max(0) / 1_000_000 + 1;
                ApiError {
                    retry_after: Some(seconds as u64),
                    ..ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "RATE_LIMITED",
                        "too many failed attempts; try later",
                    )
                }
            }
            LoginError::Internal(inner) => inner.into(),
        }
    }
}

/// A refused link: a typed code the application can act on (offer a new
/// link for `EXPIRED`, say it was used for `USED`, …).
impl From<LinkError> for ApiError {
    fn from(error: LinkError) -> Self {
        let refused = |code| ApiError::new(StatusCode::BAD_REQUEST, code, error.to_string());
        match error {
            LinkError::Invalid => refused("INVALID_TOKEN"),
            LinkError::Expired => refused("EXPIRED"),
            LinkError::Used => refused("USED"),
            LinkError::Revoked => refused("REVOKED"),
            LinkError::WrongTenant => refused("WRONG_TENANT"),
            LinkError::Command(inner) => inner.into(),
        }
    }
}

impl From<SessionFailure> for ApiError {
    fn from(error: SessionFailure) -> Self {
        match error {
            SessionFailure::Internal(inner) => inner.into(),
            other => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                other.to_string(),
            ),
        }
    }
}

/// Every error answer is typed JSON: those that actix-web makes itself (a
/// body too large, a method not allowed, an extractor's refusal) are given
/// the same `{"error": {"code", "message"}}` body as the handlers' own
/// (on `/graphql`, the GraphQL `{"errors": [...]}` form).
pub fn typed_errors<B: 'static>() -> actix_web::middleware::ErrorHandlers<B> {
    use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
    let handler = |response: ServiceResponse<B>| {
        let is_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        if is_json || response.status() == StatusCode::SWITCHING_PROTOCOLS {
            return Ok(ErrorHandlerResponse::Response(
                response.map_into_left_body(),
            ));
        }
        let status = response.status();
        let (code, message) = match status {
            StatusCode::NOT_FOUND => ("NOT_FOUND", "no such endpoint"),
            StatusCode::PAYLOAD_TOO_LARGE => ("VALIDATION", "the request body is too large"),
            StatusCode::METHOD_NOT_ALLOWED => ("VALIDATION", "the method is not allowed here"),
            StatusCode::UNAUTHORIZED => ("UNAUTHENTICATED", "sign in"),
            StatusCode::FORBIDDEN => ("FORBIDDEN", "forbidden"),
            StatusCode::TOO_MANY_REQUESTS => ("RATE_LIMITED", "too many requests; try later"),
            s if s.is_server_error() => ("INTERNAL", "internal error"),
            _ => ("VALIDATION", "the request is not valid"),
        };
        let (request, old) = response.into_parts();
        let error = ApiError::new(status, code, message);
        // `/graphql` answers every refusal as a GraphQL response.
        let mut typed = if request.path() == "/graphql" {
            error.graphql_response()
        } else if request.path().starts_with("/scim/") {
            // SCIM clients read SCIM error bodies (RFC 7644 §3.12).
            crate::scim::error_response(status, None, message)
        } else {
            error.error_response()
        };
        for (name, value) in old.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                typed.headers_mut().insert(name.clone(), value.clone());
            }
        }
        Ok(ErrorHandlerResponse::Response(
            ServiceResponse::new(request, typed).map_into_right_body(),
        ))
    };
    ErrorHandlers::new()
        .default_handler_client(handler)
        .default_handler_server(handler)
}
