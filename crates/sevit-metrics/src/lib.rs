//! sevit-metrics
