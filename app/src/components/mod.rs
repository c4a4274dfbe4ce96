//! Reusable parts of pages.

pub mod async_view;
pub mod layout;
