//! sevit-correction
