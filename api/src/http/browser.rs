//! Browser sessions: tokens in cookies that scripts cannot read, and CSRF
//! protection by double submit.
//!
//! `POST /auth/login` with `"cookies": true` sets
//! - `__Host-custodia-access`: the access token (HttpOnly, Secure,
//!   SameSite=Strict, Path=/),
//! - `__Secure-custodia-refresh`: the refresh token (HttpOnly, Secure,
//!   SameSite=Strict, Path=/auth),
//! - `__Host-custodia-csrf`: a random CSRF token that the page's script
//!   reads and sends back as `X-CSRF-Token` on every state-changing request
//!   (Secure, SameSite=Strict, not HttpOnly),
//!
//! and answers without the tokens in the body. A request authenticated by
//! the access cookie that changes state (`POST /graphql`, `/auth/refresh`,
//! `/auth/logout`) must carry `X-CSRF-Token` equal to the CSRF cookie; a
//! bearer token needs none (a browser never sends it by itself).

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponseBuilder};
use subtle::ConstantTimeEq;

use crate::http::ApiError;

pub const ACCESS: &str = "__Host-custodia-access";
pub const REFRESH: &str = "__Secure-custodia-refresh";
pub const CSRF: &str = "__Host-custodia-csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

fn cookie(
    name: &'static str,
    value: String,
    path: &'static str,
    http_only: bool,
) -> Cookie<'static> {
    Cookie::build(name, value)
        .path(path)
        .secure(true)
        .http_only(http_only)
        .same_site(SameSite::Strict)
        .finish()
}

/// Sets the three cookies of a browser session.
pub fn set(
    response: &mut HttpResponseBuilder,
    access: &str,
    access_seconds: i64,
    refresh: &str,
    refresh_seconds: i64,
    csrf: &str,
) {
    let mut access = cookie(ACCESS, access.to_owned(), "/", true);
    access.set_max_age(actix_web::cookie::time::Duration::seconds(access_seconds));
    let mut refresh = cookie(REFRESH, refresh.to_owned(), "/auth", true);
    refresh.set_max_age(actix_web::cookie::time::Duration::seconds(refresh_seconds));
    let mut csrf = cookie(CSRF, csrf.to_owned(), "/", false);
    csrf.set_max_age(actix_web::cookie::time::Duration::seconds(refresh_seconds));
    response.cookie(access).cookie(refresh).cookie(csrf);
}

/// Expires the three cookies (logout).
pub fn clear(response: &mut HttpResponseBuilder) {
    for (name, path, http_only) in [
        (ACCESS, "/", true),
        (REFRESH, "/auth", true),
        (CSRF, "/", false),
    ] {
        let mut gone = cookie(name, String::new(), path, http_only);
        gone.make_removal();
        response.cookie(gone);
    }
}

/// Checks the double-submitted CSRF token of a cookie-authenticated request.
pub fn check_csrf(request: &HttpRequest) -> Result<(), ApiError> {
    let cookie = request.cookie(CSRF);
    let header = request
        .headers()
        .get(CSRF_HEADER)
        .map(|v| v.as_bytes().to_vec());
    match (cookie, header) {
        (Some(cookie), Some(header))
            if !header.is_empty() && bool::from(cookie.value().as_bytes().ct_eq(&header)) =>
        {
            Ok(())
        }
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "a cookie-authenticated request that changes state needs the X-CSRF-Token header",
        )),
    }
}

/// The credentials a request presents, as an `Authorization` value: the
/// header, else the access cookie as `Bearer <token>`. A cookie on a request
/// that may change state must pass [`check_csrf`]. `None`: none presented.
/// (The one place an HTTP request's credentials are taken; a WebSocket
/// upgrade reads the cookie through [`access_token`], for same-origin pages.)
pub fn credentials(request: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some((value, from_cookie)) = access_token(request) else {
        return Ok(None);
    };
    let safe = matches!(
        *request.method(),
        actix_web::http::Method::GET | actix_web::http::Method::HEAD
    );
    if from_cookie && !safe {
        check_csrf(request)?;
    }
    Ok(Some(value))
}

/// The token of an `Authorization: Bearer <token>` value.
pub fn bearer_token(value: &str) -> Option<&str> {
    value.strip_prefix("Bearer ")
}

/// The access token of a request: the bearer header, else the access cookie
/// (then `true`: the caller must pass [`check_csrf`] to change state).
pub(crate) fn access_token(request: &HttpRequest) -> Option<(String, bool)> {
    use actix_web::http::header;
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        return Some((value.to_str().unwrap_or("").to_owned(), false));
    }
    request
        .cookie(ACCESS)
        .map(|c| (format!("Bearer {}", c.value()), true))
}
