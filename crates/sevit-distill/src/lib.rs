//! sevit-distill
