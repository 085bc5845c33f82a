//! One file per subcommand: its arguments (clap), what it does, and its result (a
//! [`Report`](crate::output::Report)).

pub(crate) mod cluster;
pub(crate) mod host;
pub(crate) mod inspect;
pub(crate) mod keygen;
pub(crate) mod operate;
pub(crate) mod status;
pub(crate) mod store;
