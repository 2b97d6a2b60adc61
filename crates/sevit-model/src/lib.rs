//! sevit-model
