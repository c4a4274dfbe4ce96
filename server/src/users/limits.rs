//! Rate limits of the users role's public endpoints: whatever sends mail, checks a password or a
//! single-use link is limited per client address and, where a mail goes out, per email address
//! (docs/security.md lists them). Counts live in the database (`rate_counts`), so every replica
//! of the role counts together, and each hit is one atomic upsert: concurrent requests cannot all
//! pass a check made before any of them was recorded.
//!
//! Windows are fixed (a rule's window starts at a multiple of its length): at a window's edge a
//! client can get up to twice a limit through, which these limits allow for.

use crate::clock::{HOUR, MINUTE};
use crate::error::{Error, Result};
use crate::store::Store;

/// A limit: at most `limit` hits per `window_ms` on one subject.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The key's prefix.
    pub name: &'static str,
    pub limit: i64,
    pub window_ms: i64,
    /// What a refused client is told.
    pub message: &'static str,
}

/// Login attempts per account (failed ones; a right password takes its attempt back).
pub const LOGIN_ACCOUNT: Rule = Rule {
    name: "login-account",
    limit: 5,
    window_ms: 15 * MINUTE,
    message: "Too many failed logins. Wait a few minutes, or reset your password.",
};

/// Login attempts per client address (failed ones, as above).
pub const LOGIN_CLIENT: Rule = Rule {
    name: "login-client",
    limit: 20,
    window_ms: 15 * MINUTE,
    message: "Too many failed logins. Wait a few minutes, or reset your password.",
};

/// Mails asked for one email address: sign-up, a new confirmation link, a login link, a password
/// reset link, together.
pub const MAIL_ADDRESS: Rule = Rule {
    name: "mail-address",
    limit: 5,
    window_ms: HOUR,
    message: "Too many mails were asked for this address. Wait an hour, or use the last one.",
};

/// Requests that may send mail, per client address.
pub const MAIL_CLIENT: Rule = Rule {
    name: "mail-client",
    limit: 30,
    window_ms: HOUR,
    message: "Too many requests from your network. Try again later.",
};

/// Single-use links tried (confirm, login link, password reset, invite acceptance), per client
/// address: links are unguessable, and this keeps it so for anyone trying.
pub const LINK_CLIENT: Rule = Rule {
    name: "link-client",
    limit: 30,
    window_ms: 15 * MINUTE,
    message: "Too many links tried from your network. Wait a few minutes.",
};

/// The longest window of the rules above: counts of windows older than two of these are deleted.
const LONGEST_WINDOW: i64 = HOUR;

/// A hit counted on one rule's key, to take back if the request turns out not to count.
#[derive(Debug, Clone)]
pub struct Hit {
    pub key: String,
    pub window_start: i64,
}

/// The key of `rule` for `subject` (an address or an email address, lowercased by the caller).
fn key(rule: &Rule, subject: &str) -> String {
    format!("{}:{}", rule.name, subject)
}

/// Counts one hit on each `(rule, subject)` at `now`; refuses with 429 (and when to retry) if any
/// rule is now over its limit. Every rule is counted even when one refuses: an attempt is an
/// attempt.
pub async fn hit(store: &Store, rules: &[(&Rule, &str)], now: i64) -> Result<Vec<Hit>> {
    let hits: Vec<Hit> = rules
        .iter()
        .map(|(rule, subject)| Hit {
            key: key(rule, subject),
            window_start: now - now.rem_euclid(rule.window_ms),
        })
        .collect();
    let keys: Vec<(&str, i64)> = hits
        .iter()
        .map(|h| (h.key.as_str(), h.window_start))
        .collect();
    let counts = store.hit_rates(&keys, now - 2 * LONGEST_WINDOW).await?;
    for (((rule, _), hit), count) in rules.iter().zip(&hits).zip(counts) {
        if count > rule.limit {
            let retry_ms = (hit.window_start + rule.window_ms - now).max(1000);
            return Err(Error::TooManyRequests {
                retry_after_secs: (retry_ms as u64).div_ceil(1000),
                message: rule.message.to_owned(),
            });
        }
    }
    Ok(hits)
}

/// Takes a hit back.
pub async fn unhit(store: &Store, hit: &Hit) -> Result<()> {
    store.unhit_rate(&hit.key, hit.window_start).await?;
    Ok(())
}

/// The key an account's failed logins are counted under (cleared when it logs in or resets).
pub fn login_account_key(email: &str) -> String {
    key(&LOGIN_ACCOUNT, email)
}

/// The client's address as a rate-limit subject.
pub fn client(ip: &crate::identity::ClientIp) -> &str {
    ip.0.as_deref().unwrap_or("unknown")
}
