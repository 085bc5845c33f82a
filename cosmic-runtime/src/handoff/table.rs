//! The state table placeholder.
