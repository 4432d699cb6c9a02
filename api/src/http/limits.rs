//! Rate limits on the endpoints anyone can reach.

use super::ApiError;
use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use custodia_domain::TenantId;

type KeyedLimiter = governor::DefaultKeyedRateLimiter<String>;

/// Rate limits (`governor`, GCRA): on the authentication endpoints per
/// client IP, and per account (tenant and email) for logins; on `/graphql`
/// per client IP. In memory, per instance: behind a load balancer each
/// instance applies them on its own. The account lockout (ADR 0005) is what
/// holds across instances.
pub struct AuthLimits {
    per_ip: KeyedLimiter,
    per_account: KeyedLimiter,
    graphql_per_ip: KeyedLimiter,
    resets_per_address: KeyedLimiter,
}

/// `/graphql` requests a minute per client IP by default.
pub const GRAPHQL_PER_IP: u32 = 6_000;

impl AuthLimits {
    /// `per_ip` and `per_account` requests a minute, each with that burst;
    /// `/graphql` at [`GRAPHQL_PER_IP`].
    pub fn per_minute(per_ip: u32, per_account: u32) -> AuthLimits {
        AuthLimits::with_graphql(per_ip, per_account, GRAPHQL_PER_IP)
    }

    /// Every limit in requests a minute, each with that burst.
    pub fn with_graphql(per_ip: u32, per_account: u32, graphql_per_ip: u32) -> AuthLimits {
        let quota = |n: u32| {
            governor::Quota::per_minute(std::num::NonZeroU32::new(n.max(1)).expect("at least 1"))
        };
        AuthLimits {
            per_ip: KeyedLimiter::keyed(quota(per_ip)),
            per_account: KeyedLimiter::keyed(quota(per_account)),
            graphql_per_ip: KeyedLimiter::keyed(quota(graphql_per_ip)),
            resets_per_address: KeyedLimiter::keyed(per_hour(5)),
        }
    }

    /// Password-reset requests an hour per address, with that burst.
    pub fn with_reset_limit(mut self, per_address_per_hour: u32) -> AuthLimits {
        self.resets_per_address = KeyedLimiter::keyed(per_hour(per_address_per_hour));
        self
    }

    /// Refuses a password-reset request over its address's rate. `key` is
    /// a digest of the tenant and address (no address is kept). The answer
    /// is the same whether the address has an account or not.
    pub(crate) fn check_reset(&self, key: &str) -> Result<(), ApiError> {
        Self::check(&self.resets_per_address, key.to_owned())
    }

    /// Defaults: 60 auth requests a minute per IP, 10 logins a minute per account.
    pub fn standard() -> AuthLimits {
        AuthLimits::per_minute(60, 10)
    }

    /// Refuses a `/graphql` request over its client's rate.
    pub(crate) fn check_graphql(&self, request: &HttpRequest) -> Result<(), ApiError> {
        Self::check(&self.graphql_per_ip, client_ip(request))
    }

    /// The seconds to wait when a `/scim/v2` request is over its client's
    /// rate (the API's, shared with `/graphql`).
    pub fn scim_wait(&self, request: &HttpRequest) -> Option<u64> {
        Self::wait(&self.graphql_per_ip, client_ip(request))
    }

    fn check(limiter: &KeyedLimiter, key: String) -> Result<(), ApiError> {
        match Self::wait(limiter, key) {
            None => Ok(()),
            Some(seconds) => Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                "too many requests; try later",
            )
            .retry_after(seconds)),
        }
    }

    /// `None` when the request is within the rate, else the seconds to wait.
    fn wait(limiter: &KeyedLimiter, key: String) -> Option<u64> {
        use governor::clock::{Clock, DefaultClock};
        if limiter.len() > 100_000 {
            limiter.retain_recent();
        }
        limiter.check_key(&key).err().map(|not_until| {
            not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                + 1
        })
    }

    pub(crate) fn check_ip(&self, request: &HttpRequest) -> Result<(), ApiError> {
        Self::check(&self.per_ip, client_ip(request))
    }

    pub(crate) fn check_account(&self, tenant: TenantId, email: &str) -> Result<(), ApiError> {
        Self::check(
            &self.per_account,
            format!("{tenant}/{}", email.trim().to_lowercase()),
        )
    }
}

fn per_hour(n: u32) -> governor::Quota {
    let n = std::num::NonZeroU32::new(n.max(1)).expect("at least 1");
    governor::Quota::with_period(std::time::Duration::from_secs(3600) / n.get())
        .expect("a positive period")
        .allow_burst(n)
}

fn client_ip(request: &HttpRequest) -> String {
    request
        .peer_addr()
        .map_or_else(|| "unknown".to_owned(), |addr| addr.ip().to_string())
}
