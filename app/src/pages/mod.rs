//! One module per page.

pub mod api_docs;
pub mod connections;
pub mod dashboard;
pub mod live;
pub mod not_found;
pub mod topic;
pub mod topics;
