//! Bodies and validation of the users service API (`/api/users`, `/api/orgs`, `/api/tokens`,
//! `/api/invites`, `/api/admin`). Limits live here so the app can check before it sends.

use serde::{Deserialize, Serialize};

use crate::error::FieldErrors;

pub const MAX_EMAIL_CHARS: usize = 254;
pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_CHARS: usize = 128;
pub const MAX_NAME_CHARS: usize = 80;
pub const MAX_REASON_CHARS: usize = 500;
pub const MAX_TOKEN_CHARS: usize = 128;
pub const DEFAULT_API_TOKEN_DAYS: u32 = 90;
pub const MAX_API_TOKEN_DAYS: u32 = 365;

/// Normalises an email address (trimmed, lower-case) and checks it. Only ASCII addresses are
/// accepted: look-alike characters from other scripts cannot make a second account for "the same"
/// address (internationalised domains can be entered in their `xn--` form).
pub fn normalize_email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_ascii_lowercase();
    if email.is_empty() {
        return Err("is required".into());
    }
    if email.chars().count() > MAX_EMAIL_CHARS {
        return Err(format!("must be at most {MAX_EMAIL_CHARS} characters"));
    }
    if !email.is_ascii() {
        return Err(
            "must contain only ASCII characters (write international domains as xn--…)".into(),
        );
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err("is not an email address".into());
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if local_ok && domain_ok {
        Ok(email)
    } else {
        Err("is not an email address".into())
    }
}

pub fn check_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        Err(format!("must be at least {MIN_PASSWORD_CHARS} characters"))
    } else if n > MAX_PASSWORD_CHARS {
        Err(format!("must be at most {MAX_PASSWORD_CHARS} characters"))
    } else {
        Ok(())
    }
}

/// A display name (org, token): trimmed, 1–80 characters, no control characters.
pub fn normalize_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        Err("is required".into())
    } else if name.chars().count() > MAX_NAME_CHARS {
        Err(format!("must be at most {MAX_NAME_CHARS} characters"))
    } else if name.chars().any(char::is_control) {
        Err("must not contain control characters".into())
    } else {
        Ok(name.to_owned())
    }
}

fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() || token.len() > MAX_TOKEN_CHARS || !token.is_ascii() {
        Err("is not a valid link token".into())
    } else {
        Ok(())
    }
}

/// Collects per-field results into the `fields` of a validation error.
#[derive(Default)]
pub struct Checks(FieldErrors);

impl Checks {
    pub fn field<T>(&mut self, name: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(message) => {
                self.0.entry(name.to_owned()).or_insert(message);
                None
            }
        }
    }

    pub fn finish(self) -> Result<(), FieldErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

// ---- accounts -------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

impl Credentials {
    /// Validated `(email, password)`; the password's length is checked only where it is being set.
    pub fn validate(&self, setting_password: bool) -> Result<(String, String), FieldErrors> {
        let mut c = Checks::default();
        let email = c.field("email", normalize_email(&self.email));
        if setting_password {
            c.field("password", check_password(&self.password));
        } else if self.password.is_empty() || self.password.chars().count() > MAX_PASSWORD_CHARS {
            c.field::<()>("password", Err("is required".into()));
        }
        c.finish()?;
        Ok((email.unwrap_or_default(), self.password.clone()))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EmailOnly {
    pub email: String,
}

impl EmailOnly {
    pub fn validate(&self) -> Result<String, FieldErrors> {
        let mut c = Checks::default();
        let email = c.field("email", normalize_email(&self.email));
        c.finish()?;
        Ok(email.unwrap_or_default())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenOnly {
    pub token: String,
}

impl TokenOnly {
    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut c = Checks::default();
        c.field("token", check_token(&self.token));
        c.finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResetPassword {
    pub token: String,
    pub password: String,
}

impl ResetPassword {
    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut c = Checks::default();
        c.field("token", check_token(&self.token));
        c.field("password", check_password(&self.password));
        c.finish()
    }
}

/// `POST /api/users/logout-all` (the body is optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogoutAll {
    /// Also revoke every API token of the account.
    #[serde(default)]
    pub revoke_api_tokens: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    pub current_password: String,
    pub new_password: String,
}

impl ChangePassword {
    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut c = Checks::default();
        if self.current_password.is_empty()
            || self.current_password.chars().count() > MAX_PASSWORD_CHARS
        {
            c.field::<()>("current_password", Err("is required".into()));
        }
        c.field("new_password", check_password(&self.new_password));
        c.finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// Signed up, email not confirmed yet.
    Unverified,
    /// Email confirmed, waiting for a site admin.
    Waitlisted,
    Approved,
    Rejected,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Unverified => "unverified",
            AccountStatus::Waitlisted => "waitlisted",
            AccountStatus::Approved => "approved",
            AccountStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "unverified" => AccountStatus::Unverified,
            "waitlisted" => AccountStatus::Waitlisted,
            "approved" => AccountStatus::Approved,
            "rejected" => AccountStatus::Rejected,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Editor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "viewer" => Role::Viewer,
            "editor" => Role::Editor,
            "admin" => Role::Admin,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: String,
    pub email: String,
    pub status: AccountStatus,
    pub is_admin: bool,
    #[serde(default)]
    pub suspended: bool,
    #[serde(default)]
    pub rejection_reason: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgMembership {
    pub id: String,
    pub name: String,
    pub role: Role,
}

/// `GET /api/users/me`, and the answer to a login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub user: UserInfo,
    /// Send it back as `X-CSRF-Token` on every state-changing request made with the session cookie.
    #[serde(default)]
    pub csrf_token: Option<String>,
    pub orgs: Vec<OrgMembership>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub message: String,
    /// The account can log in at once with the credentials just sent (the first account of an
    /// Airplane Mode Scopehub, its site admin): the web app does, instead of saying so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub can_log_in: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub current: bool,
}

// ---- orgs, invites, tokens -------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OrgName {
    pub name: String,
}

impl OrgName {
    pub fn validate(&self) -> Result<String, FieldErrors> {
        let mut c = Checks::default();
        let name = c.field("name", normalize_name(&self.name));
        c.finish()?;
        Ok(name.unwrap_or_default())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub user_id: String,
    pub email: String,
    pub role: Role,
    pub joined_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NewInvite {
    pub email: String,
    pub role: Role,
}

impl NewInvite {
    pub fn validate(&self) -> Result<String, FieldErrors> {
        let mut c = Checks::default();
        let email = c.field("email", normalize_email(&self.email));
        c.finish()?;
        Ok(email.unwrap_or_default())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteInfo {
    pub id: String,
    pub org_id: String,
    pub org_name: String,
    pub email: String,
    pub role: Role,
    pub invited_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// pending | accepted | revoked | expired
    pub state: String,
    /// The link to send to the invitee; present only in the answer that created the invite.
    #[serde(default)]
    pub link: Option<String>,
}

/// `GET /api/invites/{token}`: what the invitee sees before accepting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitePreview {
    pub org_name: String,
    pub email: String,
    pub role: Role,
    pub invited_by: String,
    pub expires_at: i64,
    /// Whether the invited address has an account (then accept after logging in as it), or not
    /// (then accepting the emailed link creates one with a password). Told only for the emailed
    /// link; `false` otherwise.
    pub has_account: bool,
    /// Whether this is the link emailed to the invitee (which may create the account); the
    /// inviter's copyable link may only be accepted by someone logged in as the address.
    #[serde(default)]
    pub emailed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvite {
    pub token: String,
    /// Needed only when the invitee has no account yet: the account is created with it.
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    Read,
    Write,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::Write => "write",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(TokenScope::Read),
            "write" => Some(TokenScope::Write),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NewApiToken {
    pub org_id: String,
    pub name: String,
    pub scope: TokenScope,
    /// Days until it expires; default 90, at most 365.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

impl NewApiToken {
    pub fn validate(&self) -> Result<(String, u32), FieldErrors> {
        let mut c = Checks::default();
        let name = c.field("name", normalize_name(&self.name));
        let days = self.expires_in_days.unwrap_or(DEFAULT_API_TOKEN_DAYS);
        if days == 0 || days > MAX_API_TOKEN_DAYS {
            c.field::<()>(
                "expires_in_days",
                Err(format!("must be between 1 and {MAX_API_TOKEN_DAYS}")),
            );
        }
        c.finish()?;
        Ok((name.unwrap_or_default(), days))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiTokenInfo {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub scope: TokenScope,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked: bool,
    /// The secret; present only in the answer that created the token.
    #[serde(default)]
    pub token: Option<String>,
}

// ---- admin and audit -------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rejection {
    pub reason: String,
}

/// A reason shown to someone (a rejection, a suspension): trimmed, 1–500 characters.
pub fn check_reason(raw: &str) -> Result<String, String> {
    let reason = raw.trim();
    if reason.is_empty() {
        Err("is required".into())
    } else if reason.chars().count() > MAX_REASON_CHARS {
        Err(format!("must be at most {MAX_REASON_CHARS} characters"))
    } else {
        Ok(reason.to_owned())
    }
}

impl Rejection {
    pub fn validate(&self) -> Result<String, FieldErrors> {
        let mut c = Checks::default();
        let reason = c.field("reason", check_reason(&self.reason));
        c.finish()?;
        Ok(reason.unwrap_or_default())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdminFlag {
    pub is_admin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgInfo {
    pub id: String,
    pub name: String,
    pub members: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: i64,
    pub at: i64,
    pub action: String,
    pub actor_id: Option<String>,
    pub actor_email: Option<String>,
    pub org_id: Option<String>,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub id: String,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub created_at: i64,
    pub status: String,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_lowercased_and_checked() {
        assert_eq!(
            normalize_email("  Alice@Example.COM ").unwrap(),
            "alice@example.com"
        );
        assert!(normalize_email("a@b").is_err());
        assert!(normalize_email("no-at-sign").is_err());
        assert!(normalize_email("a..b@example.com").is_err());
        assert!(normalize_email("a@-example.com").is_err());
        assert!(normalize_email(&format!("{}@example.com", "a".repeat(65))).is_err());
        assert!(normalize_email(&format!("a@{}.com", "b".repeat(250))).is_err());
        // Cyrillic "а" looks like Latin "a".
        assert!(normalize_email("\u{430}lice@example.com").is_err());
        assert!(normalize_email("bob@xn--exmple-cua.com").is_ok());
    }

    #[test]
    fn passwords_have_length_limits_in_characters() {
        assert!(check_password("123456789").is_err());
        assert!(check_password("1234567890").is_ok());
        assert!(check_password("ééééééééééé").is_ok());
        assert!(check_password(&"x".repeat(MAX_PASSWORD_CHARS + 1)).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(normalize_name("  Acme  ").unwrap(), "Acme");
        assert!(normalize_name("   ").is_err());
        assert!(normalize_name("a\u{0}b").is_err());
        assert!(normalize_name(&"x".repeat(MAX_NAME_CHARS + 1)).is_err());
    }

    #[test]
    fn roles_order_by_power() {
        assert!(Role::Admin > Role::Editor && Role::Editor > Role::Viewer);
        for r in [Role::Viewer, Role::Editor, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
    }
}
