//! `streambus check-config`: loads the configuration exactly as `serve` would,
//! prints the effective settings, and checks that storage opens and answers.

use clap::Args;

use super::serve::ConfigArgs;

/// `check-config` arguments.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

/// Validates the configuration and reports each engine's reachability.
pub async fn run(args: CheckConfigArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    println!("configuration: ok");
    println!("  listen    {}", config.server.listen);
    println!("  data_dir  {}", config.server.data_dir.display());
    println!("  demo      {}", config.server.demo);
    println!(
        "  storage   sqlite (synchronous={:?})",
        config.storage.synchronous
    );
    let state = streambus_server::open(config).await;
    match state {
        Ok(state) => {
            let ping = state.store.ping().await;
            state.store.close().await;
            match ping {
                Ok(()) => println!("store: reachable"),
                Err(e) => anyhow::bail!("store: unreachable: {e}"),
            }
        }
        Err(e) => return Err(anyhow::Error::new(e).context("store: cannot open")),
    }
    Ok(())
}
