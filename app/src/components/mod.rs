//! Pieces shared by the pages.

pub mod awaited;
pub mod chart;
pub mod format;
pub mod live_panel;
pub mod message;
