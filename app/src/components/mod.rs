//! Pieces shared by the pages.

pub mod chart;
pub mod format;
