//! One module per page (or group of closely related pages).

pub mod account;
pub mod admin;
pub mod auth;
#[cfg(feature = "map")]
pub mod bench;
pub mod home;
pub mod instances;
pub mod map_loader;
pub mod not_found;
pub mod orgs;
pub mod status;
pub mod system;
pub mod tokens;
#[cfg(feature = "map")]
pub mod topology;
