//! `wasmstate journal`: work on a journal directly, with no server running.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;

use crate::journal::{PgJournal, RedbJournal};
use crate::metrics::Metrics;
use crate::server::JOURNAL_FILE;

/// What `wasmstate journal` does.
#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Copy a redb journal (the host on it stopped) into an empty PostgreSQL
    /// one: every version, event, snapshot, value, idempotency record, outbox
    /// entry and subscription offset, in one transaction, counted at the end.
    Copy {
        /// The data dir of the redb journal.
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL journal, postgres://user:pass@host:port/db.
        #[arg(long)]
        to: String,
    },
}

/// Runs a journal command.
pub async fn run(command: JournalCommand) -> anyhow::Result<()> {
    match command {
        JournalCommand::Copy { from, to } => {
            let path = from.join(JOURNAL_FILE);
            anyhow::ensure!(path.exists(), "there is no journal at {}", path.display());
            let copied = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let metrics = Arc::new(Metrics::default());
                let source = RedbJournal::open(&path, metrics.clone())
                    .with_context(|| format!("cannot open {} (is a host still running on it?)", path.display()))?;
                let target = PgJournal::connect(&to, metrics).context("cannot open the PostgreSQL journal")?;
                Ok(crate::journal::copy(&source, &target)?)
            })
            .await??;
            for (table, rows) in copied {
                println!("{table}: {rows}");
            }
            println!("copied; start the host with --journal on the target");
            Ok(())
        }
    }
}
