//! Scopehub server tests through its real interfaces: HTTP (in-process app on a real socket), the
//! `scopehub` binary (CLI, signals), and a browser (real Chromium through chromedriver).
//! Tests that touch the database run on SQLite and on a throwaway PostgreSQL.

mod support;

mod accounts;
mod adversarial;
mod airplane;
mod architecture;
mod browser;
mod cli;
mod contracts;
mod controls;
mod crash;
mod errors;
mod faults;
mod health;
mod history;
mod instances;
mod journey;
mod lifecycle;
mod mail;
mod map;
mod monitoring;
mod orgs;
mod reports;
mod roles;
mod spa;
mod split;
mod store;
mod topology;
