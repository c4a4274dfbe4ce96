//! Reusable parts of pages.

pub mod async_view;
pub mod copy;
pub mod forms;
pub mod graph;
pub mod guard;
pub mod layout;
pub mod metrics;
pub mod node_details;
pub mod node_table;
pub mod ticker;
