//! Reusable parts of pages.

pub mod async_view;
pub mod forms;
pub mod guard;
pub mod layout;
