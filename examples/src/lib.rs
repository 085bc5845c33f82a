//! Tasks shared by the example programs.

pub mod heat;
pub mod keys;
pub mod logging;
pub mod primes;
