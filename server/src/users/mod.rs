//! The users service (issue: accounts, waitlist, orgs, invites, API tokens, admin console, audit, mail).
//!
//! Will own: its routes under `/api/users`, `/api/orgs`, `/api/tokens`, `/api/admin` (users part),
//! and the tables users, sessions, orgs, memberships, invites, api_tokens, audit_log, outbox — through
//! `store/`. Must not: read other roles' tables, or decide a request's tenant (the edge does).
