//! `streambus serve`: load configuration (defaults, file, environment, then
//! these flags), set up logging, bind, and serve until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use streambus_server::Config;
use streambus_server::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Flags of `serve` and `check-config`; each overrides the configuration.
#[derive(Debug, Args, Clone)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, env = "STREAMBUS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, env = "STREAMBUS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory of the embedded database (default ./data).
    #[arg(long, env = "STREAMBUS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Run the seed's demo streams with generators.
    #[arg(long, env = "STREAMBUS_DEMO")]
    pub demo: bool,
    /// PostgreSQL URL (cluster mode, with --nats-url).
    #[arg(long, env = "STREAMBUS_POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// NATS URL (cluster mode, with --postgres-url).
    #[arg(long, env = "STREAMBUS_NATS_URL")]
    pub nats_url: Option<String>,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
    /// Listen on a non-loopback address even with no authentication
    /// configured (anyone who reaches the port may publish and control).
    #[arg(long, env = "STREAMBUS_ALLOW_INSECURE")]
    pub allow_insecure: bool,
}

impl ConfigArgs {
    /// The configuration with these flags applied last.
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut config =
            Config::load(self.config.as_deref()).context("cannot load configuration")?;
        if let Some(listen) = self.listen {
            config.server.listen = listen;
        }
        if let Some(dir) = &self.data_dir {
            config.server.data_dir = dir.clone();
        }
        if self.demo {
            config.server.demo = true;
        }
        if let Some(url) = &self.postgres_url {
            config.cluster.postgres_url = Some(url.clone());
        }
        if let Some(url) = &self.nats_url {
            config.cluster.nats_url = Some(url.clone());
        }
        if self.log_json {
            config.log.format = LogFormat::Json;
        }
        if self.allow_insecure {
            config.auth.allow_insecure = true;
        }
        config.validate().context("invalid configuration")?;
        Ok(config)
    }
}

/// `serve` arguments.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

/// Runs the server.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    init_logging(config.log.format);
    let listen = config.server.listen;
    if !config.auth.enabled() && !listen.ip().is_loopback() {
        tracing::warn!(
            %listen,
            "no authentication configured and --allow-insecure given: anyone who reaches this \
             address can publish, read and control overlays"
        );
    }
    let state = streambus_server::open(config)
        .await
        .context("cannot start")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    streambus_server::serve(listener, state, shutdown_signal())
        .await
        .context("server failed")?;
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("streambus=info,streambus_server=info,streambus_store=info,tower_http=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
