//! Accounts and sessions: signup, email verification, login (password or emailed link), password
//! reset and change, logout, the sessions list.
//!
//! Answers that could reveal whether an email is registered (signup, resend, login link, forgot
//! password) are the same either way, and do the same expensive work (one argon2 hash) either way.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use shared::ErrorCode;
use shared::users::{
    Accepted, AccountStatus, ChangePassword, Credentials, EmailOnly, LogoutAll, Me, OrgMembership,
    ResetPassword, Role, SessionInfo, TokenOnly, normalize_name,
};

use super::UsersState;
use super::directory::{clear_cookie_header, session_cookie_header};
use super::{LOGIN_LINK_TTL, RESET_LINK_TTL, VERIFY_LINK_TTL, limits, user_info};
use crate::error::{Error, Json, Result};
use crate::identity::{AuthUser, ClientIp, Identity, SessionUser, Via};
use crate::secrets::{new_id, new_token, random_hex, sha256_hex};
use crate::store::{AuditEntry, NewMail, OrgRow, SessionRow, Tx, UserRow};

pub fn router() -> Router<UsersState> {
    Router::new()
        .route("/users/signup", post(signup))
        .route("/users/verify", post(verify))
        .route("/users/verify/resend", post(resend_verification))
        .route("/users/login", post(login))
        .route("/users/login-link", post(request_login_link))
        .route("/users/login-link/consume", post(consume_login_link))
        .route("/users/password/forgot", post(forgot_password))
        .route("/users/password/reset", post(reset_password))
        .route("/users/password", post(change_password))
        .route("/users/me", get(me))
        .route("/users/logout", post(logout))
        .route("/users/logout-all", post(logout_all))
        .route("/users/sessions", get(sessions))
        .route("/users/sessions/{id}", delete(revoke_session))
}

fn accepted(message: &str) -> (StatusCode, Json<Accepted>) {
    (
        StatusCode::ACCEPTED,
        Json(Accepted {
            message: message.to_owned(),
            can_log_in: false,
        }),
    )
}

fn invalid_link() -> Error {
    Error::bad_request("This link is invalid, has been used already, or has expired.")
}

/// Whoever an audit entry is about: a stored user, or the caller as the edge identified them.
trait Subject {
    fn id(&self) -> &str;
    fn email(&self) -> &str;
}

impl Subject for UserRow {
    fn id(&self) -> &str {
        &self.id
    }
    fn email(&self) -> &str {
        &self.email
    }
}

impl Subject for crate::identity::User {
    fn id(&self) -> &str {
        &self.id
    }
    fn email(&self) -> &str {
        &self.email
    }
}

fn entry(action: &'static str, user: Option<&impl Subject>, ip: &ClientIp) -> AuditEntry {
    AuditEntry {
        action,
        actor_id: user.map(|u| u.id().to_owned()),
        actor_email: user.map(|u| u.email().to_owned()),
        target: user.map(|u| u.id().to_owned()),
        ip: ip.0.clone(),
        ..AuditEntry::default()
    }
}

/// A kind of single-use emailed link: what it is for, how long it lives, which page opens it.
struct LinkKind {
    purpose: &'static str,
    ttl: i64,
    page: &'static str,
    subject: &'static str,
}

const VERIFY: LinkKind = LinkKind {
    purpose: "verify",
    ttl: VERIFY_LINK_TTL,
    page: "/verify",
    subject: "Confirm your email for Scopehub",
};
const LOGIN: LinkKind = LinkKind {
    purpose: "login",
    ttl: LOGIN_LINK_TTL,
    page: "/login-link",
    subject: "Your Scopehub login link",
};
const RESET: LinkKind = LinkKind {
    purpose: "reset",
    ttl: RESET_LINK_TTL,
    page: "/reset-password",
    subject: "Reset your Scopehub password",
};

/// Queues a single-use emailed link for `user` and returns the mail to report after commit.
async fn queue_link(
    state: &UsersState,
    tx: &mut Tx,
    user: &UserRow,
    kind: &LinkKind,
    text: &str,
    now: i64,
) -> Result<NewMail> {
    let LinkKind {
        purpose,
        ttl,
        page,
        subject,
    } = *kind;
    let token = super::issue_email_link(tx, &user.id, purpose, ttl, now).await?;
    let link = state.config.link(page, &token);
    let mail = NewMail {
        to: user.email.clone(),
        subject: subject.to_owned(),
        body: format!("{text}\n\n{link}\n"),
    };
    state.mailer.queue(tx, &mail, now).await?;
    Ok(mail)
}

async fn signup(
    State(state): State<UsersState>,
    ip: ClientIp,
    Json(body): Json<Credentials>,
) -> Result<Response> {
    let (email, password) = body.validate(true).map_err(Error::validation)?;
    let now = state.clock.now();
    limits::hit(
        &state.store,
        &[
            (&limits::MAIL_CLIENT, limits::client(&ip)),
            (&limits::MAIL_ADDRESS, &email),
        ],
        now,
    )
    .await?;
    // Hash first, whether or not the address is taken, so both paths cost the same.
    let password_hash = state.passwords.hash(&password).await?;
    let mut tx = state.store.begin().await?;
    let mut mails = Vec::new();
    let mut first_admin = false;
    if let Some(existing) = tx.user_by_email(&email).await? {
        if existing.status == AccountStatus::Unverified.as_str() {
            tx.retire_email_tokens(&existing.id, "verify", now).await?;
            mails.push(
                queue_link(&state, &mut tx, &existing, &VERIFY,
                    "Someone (hopefully you) signed up for Scopehub with this address. Confirm it within 24 hours:", now)
                .await?,
            );
        } else {
            let mail = NewMail {
                to: existing.email.clone(),
                subject: "You already have a Scopehub account".into(),
                body: format!(
                    "Someone tried to sign up for Scopehub with this address, which already has an account.\n\
                     If it was you, log in, or reset your password at:\n\n{}\n",
                    state
                        .config
                        .public_url
                        .join("forgot-password")
                        .map(|u| u.to_string())
                        .unwrap_or_default()
                ),
            };
            state.mailer.queue(&mut tx, &mail, now).await?;
            mails.push(mail);
        }
        tx.audit(
            &AuditEntry {
                detail: Some("address already registered".into()),
                ..entry("signup_repeated", Some(&existing), &ip)
            },
            now,
        )
        .await?;
    } else {
        first_admin = state.config.first_user_is_admin && tx.count_users().await? == 0;
        let user = UserRow {
            id: new_id(),
            email: email.clone(),
            password_hash,
            status: if first_admin {
                AccountStatus::Approved
            } else {
                AccountStatus::Unverified
            }
            .as_str()
            .to_owned(),
            rejection_reason: None,
            is_admin: first_admin,
            suspended_at: None,
            email_verified_at: first_admin.then_some(now),
            created_at: now,
            updated_at: now,
        };
        tx.insert_user(&user).await?;
        if !first_admin {
            mails.push(
                queue_link(
                    &state,
                    &mut tx,
                    &user,
                    &VERIFY,
                    "Welcome to Scopehub! Confirm your email address within 24 hours:",
                    now,
                )
                .await?,
            );
        }
        let detail = first_admin.then(|| "first account: site admin".to_owned());
        tx.audit(
            &AuditEntry {
                detail,
                ..entry("signup", Some(&user), &ip)
            },
            now,
        )
        .await?;
    }
    match tx.commit().await {
        Ok(()) => {}
        // A concurrent signup with the same address won the race: answer as for a taken address.
        Err(e) if e.is_unique_violation() => mails.clear(),
        Err(e) => return Err(e.into()),
    }
    for mail in &mails {
        state.mailer.sent(mail);
    }
    if first_admin {
        let (status, Json(mut body)) =
            accepted("You are the first account, so you are this Scopehub's site admin.");
        body.can_log_in = true;
        return Ok((status, Json(body)).into_response());
    }
    Ok(accepted("Check your email: we sent a link to confirm your address.").into_response())
}

async fn verify(
    State(state): State<UsersState>,
    ip: ClientIp,
    Json(body): Json<TokenOnly>,
) -> Result<Json<Accepted>> {
    body.validate().map_err(Error::validation)?;
    let now = state.clock.now();
    limits::hit(
        &state.store,
        &[(&limits::LINK_CLIENT, limits::client(&ip))],
        now,
    )
    .await?;
    let mut tx = state.store.begin().await?;
    let token = tx
        .consume_email_token(&sha256_hex(&body.token), "verify", now)
        .await?
        .ok_or_else(invalid_link)?;
    let mut user = tx
        .user_by_id(&token.user_id)
        .await?
        .ok_or_else(invalid_link)?;
    if user.status == AccountStatus::Unverified.as_str() {
        let next = if state.config.open_signup {
            AccountStatus::Approved
        } else {
            AccountStatus::Waitlisted
        };
        user.status = next.as_str().to_owned();
        user.email_verified_at = Some(now);
        user.updated_at = now;
        tx.update_user(&user).await?;
    }
    tx.audit(&entry("verify", Some(&user), &ip), now).await?;
    tx.commit().await?;
    let message = match AccountStatus::parse(&user.status) {
        Some(AccountStatus::Approved) => "Your email is confirmed. Log in to start.",
        _ => {
            "Your email is confirmed. You are on the early-access list: we will email you when you are in."
        }
    };
    Ok(Json(Accepted {
        message: message.to_owned(),
        can_log_in: false,
    }))
}

/// The "email me a link" endpoints: mails a `kind` link to the account of `email` when
/// `eligible` says so (retiring older links of that kind), and answers `answer` either way, so the
/// answer never tells whether the address is registered.
async fn mail_link_if(
    state: &UsersState,
    ip: &ClientIp,
    email: &str,
    kind: &LinkKind,
    text: &str,
    eligible: fn(&UserRow) -> bool,
    answer: &str,
) -> Result<Response> {
    let now = state.clock.now();
    // Counted whether or not the address has an account, so the answer tells nothing.
    limits::hit(
        &state.store,
        &[
            (&limits::MAIL_CLIENT, limits::client(ip)),
            (&limits::MAIL_ADDRESS, email),
        ],
        now,
    )
    .await?;
    let mut tx = state.store.begin().await?;
    let mut mail = None;
    if let Some(user) = tx.user_by_email(email).await?
        && eligible(&user)
    {
        tx.retire_email_tokens(&user.id, kind.purpose, now).await?;
        mail = Some(queue_link(state, &mut tx, &user, kind, text, now).await?);
    }
    tx.commit().await?;
    if let Some(mail) = &mail {
        state.mailer.sent(mail);
    }
    Ok(accepted(answer).into_response())
}

async fn resend_verification(
    State(state): State<UsersState>,
    ip: ClientIp,
    Json(body): Json<EmailOnly>,
) -> Result<Response> {
    let email = body.validate().map_err(Error::validation)?;
    mail_link_if(
        &state,
        &ip,
        &email,
        &VERIFY,
        "Here is a new link to confirm your email address (valid 24 hours):",
        |user| user.status == AccountStatus::Unverified.as_str(),
        "If that address has an unconfirmed account, we sent it a new link.",
    )
    .await
}

/// Refuses accounts that may not have a session, with a message that helps their owner.
fn check_can_log_in(user: &UserRow) -> Result<()> {
    if user.suspended_at.is_some() {
        return Err(Error::forbidden(
            "This account is suspended. Contact the site's administrators.",
        ));
    }
    match AccountStatus::parse(&user.status) {
        Some(AccountStatus::Unverified) | None => Err(Error::client(
            StatusCode::FORBIDDEN,
            ErrorCode::EmailNotVerified,
            "Confirm your email first: follow the link we sent you (you can ask for a new one).",
        )),
        Some(AccountStatus::Rejected) => Err(Error::forbidden(format!(
            "Your request for early access was declined: {}",
            user.rejection_reason
                .as_deref()
                .unwrap_or("no reason given")
        ))),
        Some(AccountStatus::Waitlisted | AccountStatus::Approved) => Ok(()),
    }
}

/// Gives an approved user their personal org the first time they log in.
pub(crate) async fn ensure_personal_org(tx: &mut Tx, user: &UserRow, now: i64) -> Result<()> {
    if user.status != AccountStatus::Approved.as_str()
        || tx.personal_org_of(&user.id).await?.is_some()
    {
        return Ok(());
    }
    let local = user.email.split('@').next().unwrap_or("My");
    let name = normalize_name(&format!("{local}'s org")).unwrap_or_else(|_| "My org".to_owned());
    let org = OrgRow {
        id: new_id(),
        name,
        personal_of: Some(user.id.clone()),
        created_at: now,
    };
    tx.insert_org(&org).await?;
    tx.upsert_membership(&org.id, &user.id, Role::Admin.as_str(), now)
        .await?;
    tx.audit(
        &AuditEntry {
            action: "org_created",
            actor_id: Some(user.id.clone()),
            actor_email: Some(user.email.clone()),
            org_id: Some(org.id.clone()),
            target: Some(org.id.clone()),
            detail: Some("personal org".into()),
            ..AuditEntry::default()
        },
        now,
    )
    .await?;
    Ok(())
}

/// Creates a session in `tx`; returns the cookie value and the CSRF token.
pub(crate) async fn start_session(
    state: &UsersState,
    tx: &mut Tx,
    user: &UserRow,
    ip: &ClientIp,
    headers: &HeaderMap,
    now: i64,
) -> Result<(String, String)> {
    let (token, token_hash) = new_token("shs_");
    let csrf_token = random_hex(32);
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(300).collect::<String>());
    tx.insert_session(&SessionRow {
        id: new_id(),
        token_hash,
        user_id: user.id.clone(),
        csrf_token: csrf_token.clone(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + state.config.session_absolute,
        user_agent,
        ip: ip.0.clone(),
        revoked_at: None,
    })
    .await?;
    Ok((token, csrf_token))
}

/// The answer to a successful login: the session cookie and the caller's `Me`.
async fn logged_in(
    state: &UsersState,
    user: &UserRow,
    token: &str,
    csrf_token: String,
) -> Result<Response> {
    let me = me_of(state, user, Some(csrf_token)).await?;
    let cookie = session_cookie_header(
        token,
        state.config.session_absolute,
        state.config.secure_cookies,
    );
    Ok(([(header::SET_COOKIE, cookie)], Json(me)).into_response())
}

async fn me_of(state: &UsersState, user: &UserRow, csrf_token: Option<String>) -> Result<Me> {
    let orgs = state
        .store
        .memberships_of(&user.id)
        .await?
        .into_iter()
        .map(|m| OrgMembership {
            id: m.org_id,
            name: m.org_name,
            role: Role::parse(&m.role).unwrap_or(Role::Viewer),
        })
        .collect();
    Ok(Me {
        user: user_info(user),
        csrf_token,
        orgs,
    })
}

async fn login(
    State(state): State<UsersState>,
    ip: ClientIp,
    headers: HeaderMap,
    Json(body): Json<Credentials>,
) -> Result<Response> {
    let (email, password) = body.validate(false).map_err(Error::validation)?;
    let now = state.clock.now();
    // Counted before the password is checked, in one atomic step per key: concurrent wrong
    // passwords cannot all pass. A right one takes its attempt back.
    let hits = limits::hit(
        &state.store,
        &[
            (&limits::LOGIN_ACCOUNT, &email),
            (&limits::LOGIN_CLIENT, limits::client(&ip)),
        ],
        now,
    )
    .await?;

    let user = state.store.user_by_email(&email).await?;
    let stored = user.as_ref().map(|u| u.password_hash.as_str());
    if !state.passwords.verify(&password, stored).await {
        let failed = AuditEntry {
            actor_email: Some(email),
            ..entry("login_failed", user.as_ref(), &ip)
        };
        state.store.audit(&failed, now).await?;
        return Err(Error::client(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "The email or password is wrong.",
        ));
    }
    let Some(user) = user else {
        return Err(Error::Internal(anyhow::anyhow!(
            "password verified without an account"
        )));
    };
    for hit in &hits[1..] {
        limits::unhit(&state.store, hit).await?;
    }
    check_can_log_in(&user)?;

    let mut tx = state.store.begin().await?;
    tx.clear_rate(&hits[0].key).await?;
    ensure_personal_org(&mut tx, &user, now).await?;
    let (token, csrf) = start_session(&state, &mut tx, &user, &ip, &headers, now).await?;
    tx.audit(&entry("login", Some(&user), &ip), now).await?;
    tx.commit().await?;
    logged_in(&state, &user, &token, csrf).await
}

async fn request_login_link(
    State(state): State<UsersState>,
    ip: ClientIp,
    Json(body): Json<EmailOnly>,
) -> Result<Response> {
    let email = body.validate().map_err(Error::validation)?;
    mail_link_if(
        &state,
        &ip,
        &email,
        &LOGIN,
        "Follow this link within 15 minutes to log in to Scopehub:",
        |user| check_can_log_in(user).is_ok(),
        "If that address has an account, we sent it a login link.",
    )
    .await
}

async fn consume_login_link(
    State(state): State<UsersState>,
    ip: ClientIp,
    headers: HeaderMap,
    Json(body): Json<TokenOnly>,
) -> Result<Response> {
    body.validate().map_err(Error::validation)?;
    let now = state.clock.now();
    limits::hit(
        &state.store,
        &[(&limits::LINK_CLIENT, limits::client(&ip))],
        now,
    )
    .await?;
    let mut tx = state.store.begin().await?;
    let token = tx
        .consume_email_token(&sha256_hex(&body.token), "login", now)
        .await?
        .ok_or_else(invalid_link)?;
    let user = tx
        .user_by_id(&token.user_id)
        .await?
        .ok_or_else(invalid_link)?;
    check_can_log_in(&user)?;
    ensure_personal_org(&mut tx, &user, now).await?;
    let (session, csrf) = start_session(&state, &mut tx, &user, &ip, &headers, now).await?;
    tx.audit(
        &AuditEntry {
            detail: Some("login link".into()),
            ..entry("login", Some(&user), &ip)
        },
        now,
    )
    .await?;
    tx.commit().await?;
    logged_in(&state, &user, &session, csrf).await
}

async fn forgot_password(
    State(state): State<UsersState>,
    ip: ClientIp,
    Json(body): Json<EmailOnly>,
) -> Result<Response> {
    let email = body.validate().map_err(Error::validation)?;
    mail_link_if(
        &state,
        &ip,
        &email,
        &RESET,
        "Follow this link within an hour to choose a new password. If you did not ask for it, ignore this mail.",
        |user| user.suspended_at.is_none(),
        "If that address has an account, we sent it a link to reset the password.",
    )
    .await
}

async fn reset_password(
    State(state): State<UsersState>,
    ip: ClientIp,
    Json(body): Json<ResetPassword>,
) -> Result<Json<Accepted>> {
    body.validate().map_err(Error::validation)?;
    let now = state.clock.now();
    limits::hit(
        &state.store,
        &[(&limits::LINK_CLIENT, limits::client(&ip))],
        now,
    )
    .await?;
    // The link is checked before the new password is hashed: a bogus reset costs a lookup, not
    // an argon2 hash (then checked again, and used, in the transaction that changes the password).
    let digest = sha256_hex(&body.token);
    if !state
        .store
        .email_token_is_live(&digest, "reset", now)
        .await?
    {
        return Err(invalid_link());
    }
    let password_hash = state.passwords.hash(&body.password).await?;
    let mut tx = state.store.begin().await?;
    let token = tx
        .consume_email_token(&digest, "reset", now)
        .await?
        .ok_or_else(invalid_link)?;
    let mut user = tx
        .user_by_id(&token.user_id)
        .await?
        .ok_or_else(invalid_link)?;
    user.password_hash = password_hash;
    user.updated_at = now;
    tx.update_user(&user).await?;
    // A reset means the old password may be known to someone else: end every session, and
    // revoke the API tokens that whoever knew it may have made.
    tx.revoke_sessions_of(&user.id, None, now).await?;
    tx.revoke_api_tokens_of(&user.id, None, now).await?;
    tx.retire_email_tokens(&user.id, "reset", now).await?;
    tx.clear_rate(&limits::login_account_key(&user.email))
        .await?;
    tx.audit(&entry("password_reset", Some(&user), &ip), now)
        .await?;
    tx.commit().await?;
    Ok(Json(Accepted {
        message: "Your password is changed. Log in with the new one.".into(),
        can_log_in: false,
    }))
}

async fn change_password(
    State(state): State<UsersState>,
    SessionUser(identity): SessionUser,
    ip: ClientIp,
    Json(body): Json<ChangePassword>,
) -> Result<StatusCode> {
    body.validate().map_err(Error::validation)?;
    let mut user = state.user_row(&identity.user).await?;
    if !state
        .passwords
        .verify(&body.current_password, Some(&user.password_hash))
        .await
    {
        let mut fields = shared::FieldErrors::new();
        fields.insert("current_password".into(), "is wrong".into());
        return Err(Error::validation(fields));
    }
    let password_hash = state.passwords.hash(&body.new_password).await?;
    let now = state.clock.now();
    user.password_hash = password_hash;
    user.updated_at = now;
    let mut tx = state.store.begin().await?;
    tx.update_user(&user).await?;
    tx.revoke_sessions_of(&user.id, identity.session_id(), now)
        .await?;
    tx.audit(&entry("password_change", Some(&user), &ip), now)
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(State(state): State<UsersState>, AuthUser(identity): AuthUser) -> Result<Json<Me>> {
    let csrf = match &identity.via {
        Via::Session { csrf_token, .. } => Some(csrf_token.clone()),
        Via::ApiToken { .. } => None,
    };
    let user = state.user_row(&identity.user).await?;
    let mut me = me_of(&state, &user, csrf).await?;
    // An API token acts in one org: it learns of no other the user belongs to.
    if let Via::ApiToken { org_id, .. } = &identity.via {
        me.orgs.retain(|org| &org.id == org_id);
    }
    Ok(Json(me))
}

fn cleared(state: &UsersState) -> Response {
    (
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            clear_cookie_header(state.config.secure_cookies),
        )],
    )
        .into_response()
}

async fn logout(
    State(state): State<UsersState>,
    SessionUser(identity): SessionUser,
    ip: ClientIp,
) -> Result<Response> {
    end_sessions(&state, &identity, &ip, false).await?;
    Ok(cleared(&state))
}

/// Ends every session of the account; with `revoke_api_tokens`, its API tokens too. The body is
/// optional.
async fn logout_all(
    State(state): State<UsersState>,
    SessionUser(identity): SessionUser,
    ip: ClientIp,
    body: axum::body::Bytes,
) -> Result<Response> {
    let options: LogoutAll = if body.iter().all(u8::is_ascii_whitespace) {
        LogoutAll::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| Error::bad_request(format!("{e}")))?
    };
    end_sessions(&state, &identity, &ip, true).await?;
    if options.revoke_api_tokens {
        let now = state.clock.now();
        let mut tx = state.store.begin().await?;
        let revoked = tx
            .revoke_api_tokens_of(&identity.user.id, None, now)
            .await?;
        tx.audit(
            &AuditEntry {
                detail: Some(format!("{revoked} API tokens revoked")),
                ..entry("api_tokens_revoked", Some(&identity.user), &ip)
            },
            now,
        )
        .await?;
        tx.commit().await?;
    }
    Ok(cleared(&state))
}

async fn end_sessions(
    state: &UsersState,
    identity: &Identity,
    ip: &ClientIp,
    everywhere: bool,
) -> Result<()> {
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    if everywhere {
        tx.revoke_sessions_of(&identity.user.id, None, now).await?;
    } else if let Some(id) = identity.session_id() {
        tx.revoke_session(&identity.user.id, id, now).await?;
    }
    let action = if everywhere {
        "logout_everywhere"
    } else {
        "logout"
    };
    tx.audit(&entry(action, Some(&identity.user), ip), now)
        .await?;
    tx.commit().await?;
    Ok(())
}

async fn sessions(
    State(state): State<UsersState>,
    SessionUser(identity): SessionUser,
) -> Result<Json<Vec<SessionInfo>>> {
    let now = state.clock.now();
    let current = identity.session_id();
    let list = state
        .store
        .live_sessions_of(&identity.user.id, now)
        .await?
        .into_iter()
        .filter(|s| now - s.last_seen_at <= state.config.session_idle)
        .map(|s| SessionInfo {
            current: Some(s.id.as_str()) == current,
            id: s.id,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            expires_at: s.expires_at,
            user_agent: s.user_agent,
            ip: s.ip,
        })
        .collect();
    Ok(Json(list))
}

async fn revoke_session(
    State(state): State<UsersState>,
    SessionUser(identity): SessionUser,
    ip: ClientIp,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    if !tx.revoke_session(&identity.user.id, &id, now).await? {
        return Err(Error::not_found("No such session."));
    }
    tx.audit(
        &AuditEntry {
            target: Some(id),
            ..entry("session_revoked", Some(&identity.user), &ip)
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
