//! The `guildhall` command: the AppView, the indexer and the operator CLI in one binary.

mod cli;
mod config;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use guildhall_ingest::identity::{Resolver, ResolverConfig};
use guildhall_ingest::indexer::{self, Context, IndexerConfig};
use guildhall_ingest::metrics::Metrics;
use guildhall_ingest::net::FetchPolicy;
use guildhall_ingest::repo::RepoFetcher;
use guildhall_store::Store;
use tokio::sync::{broadcast, watch};

use crate::config::{Cli, Command, IngestArgs};

/// Name of the search-cursor HMAC key in the database's instance secrets.
const CURSOR_KEY_NAME: &str = "search-cursor-hmac";

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GUILDHALL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let ok = std::process::ExitCode::SUCCESS;
    match cli.command {
        Command::Migrate { db } => {
            let store = Store::open(&db.db).await.context("opening the database")?;
            store.migrate().await.context("migrating")?;
            tracing::info!(backend = store.backend_name(), "database is up to date");
            Ok(ok)
        }
        Command::Serve(args) => serve(args, true).await.map(|()| ok),
        Command::Ingest(args) => serve(args, false).await.map(|()| ok),
        // Operator commands print for people and choose their own exit codes (see `cli`).
        Command::Operator(cmd) => Ok(cli::run(cmd).await),
        Command::Backfill {
            db,
            ingest,
            from,
            concurrency,
        } => {
            let store = Store::open(&db.db).await.context("opening the database")?;
            let ctx = context(store, &ingest)?;
            let report = guildhall_ingest::backfill::run(ctx, &from, concurrency).await?;
            tracing::info!(
                listed = report.listed,
                indexed = report.indexed,
                skipped = report.skipped,
                failed = report.failed,
                inactive = report.inactive,
                "backfill finished"
            );
            Ok(ok)
        }
    }
}

fn context(store: Store, args: &IngestArgs) -> anyhow::Result<Arc<Context>> {
    let resolver = Arc::new(Resolver::new(ResolverConfig {
        plc: args.plc.clone(),
        handle_resolver: args.handle_resolver.clone(),
        dns: args.dns,
        capacity: 100_000,
        timeout: Duration::from_secs(10),
        policy: FetchPolicy {
            allow_private: args.allow_private_addresses,
        },
    })?);
    // Fail at start, not at the first record, if the embedded lexicons are broken.
    guildhall_lexicon::Catalog::guildhall()?;
    let metrics = Arc::new(Metrics::default());
    let fetcher = RepoFetcher::new(resolver.clone(), metrics.clone(), args.max_repo_bytes);
    let (committed, _) = broadcast::channel(64);
    Ok(Arc::new(Context {
        store,
        resolver,
        metrics,
        fetcher,
        committed,
    }))
}

async fn serve(args: config::ServeArgs, http: bool) -> anyhow::Result<()> {
    let store = Store::open(&args.db.db)
        .await
        .context("opening the database")?;
    let ctx = context(store.clone(), &args.ingest)?;
    let (stop_tx, stop_rx) = watch::channel(false);

    let server = if http {
        let trust = guildhall_appview::TrustIndex::load(&store)
            .await
            .context("building the trust graph")?;
        // Ingestion broadcasts every committed batch; the graph follows it live. Writes of
        // other processes (`guildhall ingest` beside `serve --no-ingest`, a `guildhall
        // backfill`) reach no broadcast: the same task checks the store's change token for
        // them every --trust-refresh.
        trust.spawn_updates(ctx.committed.subscribe(), store.clone(), args.trust_refresh);
        let cursor_key = match &args.cursor_key {
            Some(k) => k.0,
            None => {
                // First start: this key; every later start and every process on the same
                // database: the stored one.
                let stored = store
                    .instance_secret(CURSOR_KEY_NAME, &rand::random::<[u8; 32]>())
                    .await
                    .context("reading the search cursor key")?;
                <[u8; 32]>::try_from(stored.as_slice())
                    .map_err(|_| anyhow::anyhow!("the stored search cursor key is not 32 bytes"))?
            }
        };
        let config = guildhall_appview::AppConfig {
            anchors: args.anchors.clone(),
            rate_limit_per_minute: args.rate_limit,
            hostname_for_did_web: args.hostname.clone(),
            trusted_proxies: args.trusted_proxies.clone(),
            cursor_key: guildhall_appview::CursorKey::new(cursor_key),
            candidates_per_operator: args.candidates_per_operator as usize,
            ..guildhall_appview::AppConfig::default()
        };
        // Service auth resolves callers through the ingestion's resolver: one cache, and the
        // same SSRF-guarded clients for did:web hosts (`--allow-private-addresses` applies).
        let state =
            guildhall_appview::AppState::new(store.clone(), ctx.metrics.clone(), trust, config)
                .with_service_auth(
                    ctx.resolver.clone(),
                    guildhall_appview::auth::AuthConfig::default(),
                )
                .with_ledger(guildhall_store::LedgerHandle::start(
                    store.clone(),
                    guildhall_store::LedgerConfig::default(),
                ));
        let admin = match args.admin_listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("listening on {addr} (admin)"))?;
                if !addr.ip().is_loopback() {
                    tracing::warn!(%addr, "the admin listener (/status, /metrics) is not on loopback: keep it off public networks");
                }
                tracing::info!(addr = %listener.local_addr()?, "admin endpoints listening");
                let app = guildhall_appview::admin_router(state.clone());
                let mut stop = stop_rx.clone();
                Some(tokio::spawn(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stop.changed().await;
                        })
                        .await
                }))
            }
            None => None,
        };
        let app = guildhall_appview::router(state);
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        tracing::info!(addr = %listener.local_addr()?, "AppView listening");
        let mut stop = stop_rx.clone();
        Some((
            tokio::spawn(async move {
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
                )
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await
            }),
            admin,
        ))
    } else {
        None
    };

    let ingest = if args.no_ingest {
        None
    } else {
        let config = IndexerConfig {
            sources: args.ingest.firehose.clone(),
            shards: args.ingest.shards,
            ..IndexerConfig::default()
        };
        Some(tokio::spawn(indexer::run(
            ctx.clone(),
            config,
            stop_rx.clone(),
        )))
    };

    // Ingestion ending on its own is a failure (a store error it could not retry): stop the
    // whole process, so a supervisor restarts it from the committed cursor, rather than go on
    // serving an index that no longer moves.
    let ingest_result = match ingest {
        Some(mut task) => tokio::select! {
            () = shutdown_signal() => {
                let _ = stop_tx.send(true);
                task.await
            }
            r = &mut task => {
                let _ = stop_tx.send(true);
                r
            }
        },
        None => {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
            Ok(Ok(()))
        }
    };
    tracing::info!("shutting down");
    if let Some((s, admin)) = server {
        s.await.context("server task")??;
        if let Some(a) = admin {
            a.await.context("admin server task")??;
        }
    }
    ingest_result.context("ingestion task")??;
    store.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
