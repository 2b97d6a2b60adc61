//! The one font every picture is drawn with: DejaVu Sans, embedded, so no system font
//! library is needed.

use std::sync::OnceLock;

use plotters::style::{register_font, FontStyle};

/// The family name plotters knows the embedded font by.
pub(crate) const FONT: &str = "sans-serif";

/// Registers the embedded DejaVu Sans as plotters' [`FONT`] (once per process).
pub(crate) fn ensure_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            // Regular only (plotters falls back to it for other styles): ~0.7 MB in the binary.
            register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
                .map_err(|_| "the embedded DejaVu Sans font could not be parsed".to_string())
        })
        .clone()
        .map_err(anyhow::Error::msg)
}
