//! One module per subcommand, plus [`client`]: the client plumbing they share.

pub mod bench;
pub mod check_config;
pub mod client;
pub mod publish;
pub mod serve;
pub mod tail;
pub mod token;
