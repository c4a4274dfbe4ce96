//! One module per page (or group of closely related pages).

pub mod account;
pub mod admin;
pub mod auth;
pub mod bench;
pub mod home;
pub mod instances;
pub mod not_found;
pub mod orgs;
pub mod status;
pub mod tokens;
pub mod topology;
