//! Tasks shared by the example programs.

pub mod heat;
