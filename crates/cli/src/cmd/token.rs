//! `streambus token`: mints a scoped JWT, e.g. for an OBS overlay URL:
//! `streambus token --role overlay --tenant acme --streams 'match-*' --ttl 12h`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use streambus_core::auth::Role;
use streambus_server::auth::jwt::{Claims, Minter};

/// `token` arguments.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// admin, producer, consumer or overlay.
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// The tenant the token is scoped to.
    #[arg(long, default_value = streambus_core::DEFAULT_TENANT)]
    tenant: String,
    /// Stream globs the role may use: published to by producers and admins,
    /// read by everyone (repeatable).
    #[arg(long = "streams", value_name = "GLOB")]
    streams: Vec<String>,
    /// Extra stream globs it may publish to (repeatable).
    #[arg(long = "publish", value_name = "GLOB")]
    publish: Vec<String>,
    /// Extra stream globs it may read (repeatable).
    #[arg(long = "subscribe", value_name = "GLOB")]
    subscribe: Vec<String>,
    /// Lifetime: seconds, or a number with s, m, h or d.
    #[arg(long, default_value = "12h", value_parser = parse_ttl)]
    ttl: u64,
    /// Who the token is for (the `sub` claim, shown in the audit log).
    #[arg(long, default_value = "streambus-token")]
    subject: String,
    /// HS256 shared secret.
    #[arg(long, env = "STREAMBUS_AUTH__HS256_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Ed25519 private key (PEM file) for EdDSA tokens.
    #[arg(
        long,
        env = "STREAMBUS_AUTH__ED25519_PRIVATE_KEY_FILE",
        conflicts_with = "secret"
    )]
    ed25519_key: Option<PathBuf>,
}

/// Prints the token on stdout.
pub async fn run(args: TokenArgs) -> anyhow::Result<()> {
    let minter = match (&args.secret, &args.ed25519_key) {
        (Some(secret), None) => {
            anyhow::ensure!(
                secret.len() >= 32,
                "the HS256 secret must be at least 32 bytes"
            );
            Minter::hs256(secret.as_bytes())
        }
        (None, Some(path)) => {
            let pem =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            Minter::ed25519_pem(&pem).context("not an Ed25519 private key")?
        }
        _ => anyhow::bail!(
            "give a signing key: --secret (or STREAMBUS_AUTH__HS256_SECRET) or --ed25519-key \
             (or STREAMBUS_AUTH__ED25519_PRIVATE_KEY_FILE)"
        ),
    };
    let publishes = matches!(args.role, Role::Admin | Role::Producer);
    let mut publish = args.publish.clone();
    if publishes {
        publish.extend(args.streams.iter().cloned());
    }
    let mut subscribe = args.subscribe.clone();
    subscribe.extend(args.streams.iter().cloned());
    let now = u64::try_from(streambus_core::time::now_ms() / 1000).unwrap_or(0);
    let claims = Claims {
        sub: args.subject,
        tenant: args.tenant,
        role: args.role,
        publish,
        subscribe,
        exp: now + args.ttl,
        iat: Some(now),
        nbf: None,
    };
    println!("{}", minter.mint(&claims).context("cannot mint the token")?);
    Ok(())
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| "must be admin, producer, consumer or overlay".into())
}

/// `90`, `90s`, `30m`, `12h`, `7d` → seconds.
fn parse_ttl(s: &str) -> Result<u64, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 90s, 30m, 12h or 7d"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit `{unit}`; use s, m, h or d")),
    };
    match n.checked_mul(factor) {
        Some(secs) if secs > 0 && secs <= 366 * 86_400 => Ok(secs),
        _ => Err("the lifetime must be between 1 second and 366 days".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("30m"), Ok(1800));
        assert_eq!(parse_ttl("12h"), Ok(43_200));
        assert_eq!(parse_ttl("7d"), Ok(604_800));
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("5y").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("400d").is_err());
    }
}
