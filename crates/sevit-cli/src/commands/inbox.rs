//! `sevit inbox add|status`: new unlabeled images into a site's content-addressed store.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Subcommand};
use sevit_evolution::step::image_states;
use sevit_evolution::{ImageStore, Registry, Site};

/// Flags of `sevit inbox`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: InboxCommand,
}

/// `sevit inbox` sub-commands.
#[derive(Subcommand, Debug)]
pub enum InboxCommand {
    /// Store the images under folders (recursively) or files: PNG, JPEG, DICOM (with or
    /// without extension). Duplicates (same pixels) count once; unreadable files are quarantined.
    Add {
        /// Site directory (created when absent).
        #[arg(long)]
        store: PathBuf,
        /// Folders or image files.
        #[arg(required = true, value_name = "DIR")]
        sources: Vec<PathBuf>,
    },
    /// Counts: stored, new since the model in service, held, quarantined (with reasons).
    Status {
        /// Site directory.
        #[arg(long)]
        store: PathBuf,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        InboxCommand::Add { store, sources } => {
            let site = Site::new(store);
            let r = ImageStore::new(&site).add(&sources)?;
            println!(
                "arrival {}: {} files scanned, {} added, {} duplicates, {} quarantined ({} already), \
                 {} hidden skipped, {} linked folders not followed",
                r.arrival,
                r.scanned,
                r.added,
                r.duplicates,
                r.quarantined,
                r.already_quarantined,
                r.hidden_skipped,
                r.linked_folders_skipped
            );
            if r.quarantined > 0 {
                println!(
                    "quarantine: `sevit inbox status --store {}`",
                    site.root().display()
                );
            }
            Ok(())
        }
        InboxCommand::Status { store } => {
            let site = Site::new(store);
            anyhow::ensure!(
                site.root().is_dir(),
                "site {} does not exist",
                site.root().display()
            );
            let inbox = ImageStore::new(&site).inbox()?;
            let reg = Registry::load(&site)?;
            let states = image_states(&site, &reg, &inbox)?;
            let settings = site.settings()?;
            println!("images stored:      {}", inbox.images.len());
            println!(
                "  trained on by the model in service ({}): {}",
                reg.current_id().unwrap_or("none"),
                states.trained.len()
            );
            println!(
                "  new (no version trained on them): {} (a step needs {})",
                states.new.len(),
                settings.min_new_images
            );
            println!(
                "  held (only rejected or rolled-back versions): {}",
                states.held.len()
            );
            println!("arrivals:           {}", inbox.arrivals.len());
            println!("quarantined files:  {}", inbox.quarantine.len());
            for q in &inbox.quarantine {
                println!("  {}  (arrival {}): {}", q.source, q.arrival, q.reason);
            }
            Ok(())
        }
    }
}
