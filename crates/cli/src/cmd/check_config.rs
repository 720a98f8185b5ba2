//! `streambus check-config`: loads the configuration exactly as `serve` would,
//! prints the effective settings, and checks that each engine it selects
//! (SQLite, or PostgreSQL and NATS JetStream) is reachable.

use clap::Args;
use streambus_server::config::Mode;

use super::serve::ConfigArgs;

/// `check-config` arguments.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

/// Validates the configuration and reports each engine's reachability; fails
/// when any engine cannot be reached.
pub async fn run(args: CheckConfigArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let mode = config.cluster.mode()?;
    println!("configuration: ok");
    println!("  listen    {}", config.server.listen);
    println!("  demo      {}", config.server.demo);
    match mode {
        Mode::Embedded => println!(
            "  mode      embedded (data_dir {})",
            config.server.data_dir.display()
        ),
        Mode::Cluster { .. } => println!(
            "  mode      cluster (JetStream stream {}, subjects {}.>)",
            config.cluster.stream, config.cluster.subject_prefix
        ),
    }
    let mut unreachable = 0;
    for check in streambus_server::check_engines(&config).await? {
        match &check.result {
            Ok(()) => println!("{}: reachable ({})", check.engine, check.target),
            Err(why) => {
                unreachable += 1;
                println!("{}: UNREACHABLE ({}): {why}", check.engine, check.target);
            }
        }
    }
    anyhow::ensure!(unreachable == 0, "{unreachable} engine(s) unreachable");
    Ok(())
}
