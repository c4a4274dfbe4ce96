//! Who is calling: the identity contract that every role reads (design.md §3 and §9).
//!
//! Only the edge (`frontend`) turns credentials into identity. It hands a role three things: the
//! [`Identity`] of a logged-in user (if any), the [`ClientIp`] it saw, and a [`Grant`] naming the
//! instance a request may act on (probe uploads, and browser reads after the membership check).
//! In one process they travel as request extensions; across a process boundary as the signed
//! headers of [`internal`], which the role verifies before installing the same extensions.
//!
//! Handlers declare what they need with the extractors below (`Approved`, `SiteAdmin`,
//! `ProbeInstance`, `InstanceReader`…) and never read a cookie, a token or a header themselves.
//! This module owns no state and imports no role.

pub mod internal;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use shared::ErrorCode;
use shared::users::{AccountStatus, Role, TokenScope};

use crate::error::{Error, Result};

/// The user behind a request, as the users service resolved them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub email: String,
    pub status: AccountStatus,
    pub is_admin: bool,
}

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Via {
    /// A browser session; its CSRF token is what the SPA must echo on state-changing requests.
    Session { id: String, csrf_token: String },
    /// An API token, valid in one org only.
    ApiToken {
        id: String,
        org_id: String,
        scope: TokenScope,
    },
}

/// Who is making the request, and how they proved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub user: User,
    pub via: Via,
}

impl Identity {
    pub fn status(&self) -> AccountStatus {
        self.user.status
    }

    pub fn session_id(&self) -> Option<&str> {
        match &self.via {
            Via::Session { id, .. } => Some(id),
            Via::ApiToken { .. } => None,
        }
    }

    /// The one org an API token is limited to (`None` for a session).
    pub fn token_org(&self) -> Option<&str> {
        match &self.via {
            Via::ApiToken { org_id, .. } => Some(org_id),
            Via::Session { .. } => None,
        }
    }

    /// Decides the caller's role in `org_id` from their membership (`member`, as the users service
    /// answers it): not a member, or an API token of another org, is "no such org" (the org's
    /// existence is not revealed); a lower role than `needed` is 403.
    pub fn role_in(&self, org_id: &str, member: Option<Role>, needed: Role) -> Result<Role> {
        if self
            .token_org()
            .is_some_and(|token_org| token_org != org_id)
        {
            return Err(Error::not_found("No such org."));
        }
        match member {
            None => Err(Error::not_found("No such org.")),
            Some(role) if role < needed => Err(Error::client(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                format!("This needs the {} role in the org.", needed.as_str()),
            )),
            Some(role) => Ok(role),
        }
    }
}

/// The instance a request may act on, as the edge granted it after checking the credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Grant {
    /// A probe whose token belongs to `instance`, which accepts uploads now.
    Probe { instance: String },
    /// A member of the instance's org who may read its data now, with their role in the org
    /// (an API token's: its user's), which decides what else they may do there (controls).
    Reader {
        instance: String,
        /// The instance's org.
        #[serde(default)]
        org: String,
        #[serde(default = "viewer")]
        role: Role,
    },
}

fn viewer() -> Role {
    Role::Viewer
}

/// The client's address as the edge saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientIp(pub Option<String>);

/// Role levels as types, for extractors that say "editor or up": `InstanceRole<Editor>`.
pub trait MinRole: Send + Sync + 'static {
    const ROLE: Role;
}

pub struct Viewer;
pub struct Editor;
pub struct Admin;

impl MinRole for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl MinRole for Editor {
    const ROLE: Role = Role::Editor;
}
impl MinRole for Admin {
    const ROLE: Role = Role::Admin;
}

pub fn unauthorized() -> Error {
    Error::client(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthorized,
        "Log in, or send a valid API token.",
    )
}

// ---- extractors -------------------------------------------------------------------------------------

/// Any logged-in caller (session or API token), whatever their account status.
pub struct AuthUser(pub Identity);

/// A caller whose account is approved (past the waitlist).
pub struct Approved(pub Identity);

/// A caller logged in with a browser session (not an API token): for managing credentials.
pub struct SessionUser(pub Identity);

/// A site admin, with a browser session.
pub struct SiteAdmin(pub Identity);

/// The caller's identity if there is one; never rejects.
pub struct MaybeUser(pub Option<Identity>);

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        parts
            .extensions
            .get::<Identity>()
            .cloned()
            .map(AuthUser)
            .ok_or_else(unauthorized)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Approved {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let AuthUser(identity) = AuthUser::from_request_parts(parts, state).await?;
        if identity.status() != AccountStatus::Approved {
            return Err(Error::forbidden("Your account is waiting for approval."));
        }
        Ok(Approved(identity))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SessionUser {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let AuthUser(identity) = AuthUser::from_request_parts(parts, state).await?;
        if identity.session_id().is_none() {
            return Err(Error::forbidden(
                "This needs a browser session, not an API token.",
            ));
        }
        Ok(SessionUser(identity))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SiteAdmin {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let SessionUser(identity) = SessionUser::from_request_parts(parts, state).await?;
        if !identity.user.is_admin || identity.status() != AccountStatus::Approved {
            return Err(Error::forbidden("This needs a site admin."));
        }
        Ok(SiteAdmin(identity))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for MaybeUser {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(MaybeUser(parts.extensions.get::<Identity>().cloned()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientIp>()
            .cloned()
            .unwrap_or_default())
    }
}

/// The value of the path parameter `name` (`{org}`, `{id}`…) of the route that matched, for
/// extractors that check access to what the path names.
pub async fn path_param<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    name: &str,
) -> Option<String> {
    let params = RawPathParams::from_request_parts(parts, state).await.ok()?;
    params
        .iter()
        .find(|(param, _)| *param == name)
        .map(|(_, value)| value.to_owned())
}

/// A probe upload: the instance the edge resolved the probe's token to.
pub struct ProbeInstance(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ProbeInstance {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        match parts.extensions.get::<Grant>() {
            Some(Grant::Probe { instance }) => Ok(ProbeInstance(instance.clone())),
            _ => Err(unauthorized()),
        }
    }
}

/// A browser read of the instance in the path's `{instance}`: the edge checked the caller's
/// membership and that the instance may be read, and granted exactly this instance.
pub struct InstanceReader {
    pub identity: Identity,
    pub instance: String,
    /// The instance's org, and the caller's role in it.
    pub org: String,
    pub role: Role,
}

impl<S: Send + Sync> FromRequestParts<S> for InstanceReader {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let Approved(identity) = Approved::from_request_parts(parts, state).await?;
        let in_path = path_param(parts, state, "instance").await;
        match (parts.extensions.get::<Grant>(), in_path) {
            (
                Some(Grant::Reader {
                    instance,
                    org,
                    role,
                }),
                Some(path),
            ) if *instance == path => Ok(InstanceReader {
                identity,
                instance: path,
                org: org.clone(),
                role: *role,
            }),
            // Nothing granted this instance: the edge did not check it, so nothing is revealed.
            _ => Err(Error::not_found("No such instance.")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(via: Via) -> Identity {
        Identity {
            user: User {
                id: "u".into(),
                email: "u@example.com".into(),
                status: AccountStatus::Approved,
                is_admin: false,
            },
            via,
        }
    }

    #[test]
    fn roles_are_checked_against_membership_and_the_tokens_org() {
        let session = caller(Via::Session {
            id: "s".into(),
            csrf_token: "c".into(),
        });
        assert_eq!(
            session.role_in("o", Some(Role::Editor), Role::Viewer).ok(),
            Some(Role::Editor)
        );
        assert_eq!(
            session
                .role_in("o", Some(Role::Viewer), Role::Editor)
                .unwrap_err()
                .status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            session
                .role_in("o", None, Role::Viewer)
                .unwrap_err()
                .status(),
            StatusCode::NOT_FOUND
        );
        let token = caller(Via::ApiToken {
            id: "t".into(),
            org_id: "other".into(),
            scope: TokenScope::Write,
        });
        assert_eq!(
            token
                .role_in("o", Some(Role::Admin), Role::Viewer)
                .unwrap_err()
                .status(),
            StatusCode::NOT_FOUND
        );
    }
}
