//! One module per subcommand.

pub mod bench;
pub mod check_config;
pub mod publish;
pub mod serve;
pub mod tail;
