//! Reusable parts of pages.

pub mod async_view;
pub mod copy;
pub mod forms;
#[cfg(feature = "map")]
pub mod graph;
pub mod guard;
pub mod layout;
pub mod metrics;
#[cfg(feature = "map")]
pub mod node_details;
#[cfg(feature = "map")]
pub mod node_table;
#[cfg(feature = "map")]
pub mod resources;
#[cfg(feature = "map")]
pub mod terminal;
pub mod ticker;
#[cfg(feature = "map")]
pub mod timeline;
