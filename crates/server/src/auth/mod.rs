//! Authentication (SPEC §5): turning a bearer credential into a
//! [`Principal`](streambus_core::auth::Principal).
//!
//! - [`jwt`]: HS256 and EdDSA tokens with enforced expiry, minted by
//!   `streambus token` and verified on every request.
//!
//! Permission checks themselves are pure and live in `streambus_core::auth`.

pub mod jwt;
