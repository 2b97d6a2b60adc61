//! `sevit predict`: probabilities for new images (a folder, a manifest or files; no labels
//! needed) → CSV file,probability,predicted,threshold; optional attention grids.

use std::path::PathBuf;

use clap::Args as ClapArgs;
use sevit_infer::{
    predict_images, visualize, youden_threshold_from_report, GridOptions, PredictOptions,
    SelectedImage,
};

use super::eval::ModelArgs;
use super::image_args::ImageArgs;

/// Flags of `sevit predict`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub input: ImageArgs,
    /// Output CSV.
    #[arg(long, default_value = "predictions.csv")]
    pub out: PathBuf,
    /// Decision threshold (probability >= threshold is positive).
    #[arg(long, conflicts_with = "report")]
    pub threshold: Option<f64>,
    /// Use the Youden threshold of this evaluation report.json (default threshold: 0.5).
    #[arg(long, value_name = "REPORT_JSON")]
    pub report: Option<PathBuf>,
    /// Leave unreadable images out (counted) instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Also write an attention grid per image into this folder.
    #[arg(long, value_name = "DIR")]
    pub attention: Option<PathBuf>,
    /// Share of the attention mass kept by the mask of the grids.
    #[arg(long, default_value_t = 0.6)]
    pub attention_threshold: f64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (checkpoint, stage, weights) = args.model.resolve()?;
    let list = args.input.list()?;
    let (threshold, source) = match (&args.threshold, &args.report) {
        (Some(t), _) => (*t, "given".to_string()),
        (None, Some(r)) => (
            youden_threshold_from_report(r)?,
            format!("Youden threshold of {}", r.display()),
        ),
        (None, None) => (0.5, "default".to_string()),
    };
    let model = args.model.load(&checkpoint, weights)?;
    let outcome = predict_images(
        &model,
        &list,
        &PredictOptions {
            threshold,
            skip_bad: args.skip_bad,
        },
    )?;
    let positive = sevit_infer::positive_label_of(&checkpoint, args.model.run.as_deref())
        .unwrap_or_else(|| "positive".into());
    outcome.write_csv(&args.out, &positive)?;
    println!("model: {stage} - {}", model.describe());
    println!("threshold: {threshold} ({source})");
    println!(
        "{} images scored, {} predicted positive, {} unreadable skipped",
        outcome.rows.len(),
        outcome.n_positive(),
        outcome.skipped.len()
    );
    if list.ignored > 0 {
        println!(
            "{} file(s) in the folder are not images (png, jpg, jpeg, dcm, dicom, or DICOM by content) and were ignored",
            list.ignored
        );
    }
    for (id, err) in outcome.skipped.iter().take(10) {
        println!("  skipped {id}: {err}");
    }
    println!("wrote {}", args.out.display());
    if let Some(dir) = &args.attention {
        let images: Vec<SelectedImage> = outcome
            .rows
            .iter()
            .map(|r| SelectedImage {
                id: r.id.clone(),
                path: r.path.clone(),
                label: None,
            })
            .collect();
        let opts = GridOptions {
            threshold: args.attention_threshold,
            ..GridOptions::default()
        };
        let done = visualize(
            &model,
            &images,
            dir,
            &format!("{stage} - {}", checkpoint.display()),
            &opts,
        )?;
        println!("{} attention grids in {}", done.len(), dir.display());
    }
    Ok(())
}
