//! Integration tests: the real server on an ephemeral port, real clients.

mod util;
mod smoke;
