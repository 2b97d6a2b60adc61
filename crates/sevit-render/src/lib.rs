//! `sevit-render`: every picture sevit draws, with one embedded font (DejaVu Sans, so no
//! system font library is needed), all written atomically.
//!
//! * [`plot`]: PNG plots: ROC with CI, AUC against T, AUC against nuisance severity, reliability
//!   diagrams, generic line plots.
//! * [`overlay`]: captioned image grids (attention heat maps, masks) with a colour bar.
//! * [`preview`]: the grid of the multi-crop training views of one image.

mod font;
pub mod overlay;
pub mod plot;
pub mod preview;
