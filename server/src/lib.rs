//! Scopehub's server: one binary (`scopehub`), many roles (design.md §2).
//!
//! `main.rs` only parses the command line and calls [`run`]; everything testable is here.

pub mod app;
pub mod clock;
pub mod config;
pub mod error;
pub mod frontend;
pub mod identity;
pub mod internal_client;
pub mod ops;
pub mod secrets;
pub mod server;
pub mod store;
pub mod telemetry;

pub mod collector;
pub mod monitoring;
pub mod probe;
pub mod provisioning;
pub mod ui;
pub mod users;

use config::{Cli, Command};

/// Runs one subcommand to completion.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => {
                telemetry::init_logging(&args.log)?;
                server::serve(args).await
            }
            Command::Migrate(args) => {
                telemetry::init_logging(&args.log)?;
                server::migrate(args).await
            }
            Command::Ui(args) => {
                telemetry::init_logging(&args.log)?;
                server::ui(args).await
            }
            Command::Admin(args) => match args.command {
                config::AdminCommand::Create {
                    email,
                    public_url,
                    database,
                    log,
                } => {
                    telemetry::init_logging(&log)?;
                    server::admin_create(&email, public_url, &database).await
                }
            },
            Command::Probe(args) => {
                telemetry::init_logging(&args.log)?;
                probe::run(args).await
            }
            Command::Loadgen(args) => {
                telemetry::init_logging(&args.log)?;
                probe::loadgen::run(args).await
            }
            Command::Users(args) => {
                telemetry::init_logging(&args.log)?;
                server::users(args).await
            }
            Command::Provisioning(args) => {
                telemetry::init_logging(&args.log)?;
                server::provisioning(args).await
            }
            Command::Frontend(args) => {
                telemetry::init_logging(&args.log)?;
                server::frontend(args).await
            }
            Command::Collector(args) => {
                telemetry::init_logging(&args.log)?;
                server::collector(args).await
            }
            Command::Monitoring(args) => {
                telemetry::init_logging(&args.log)?;
                server::monitoring(args).await
            }
        }
    })
}
