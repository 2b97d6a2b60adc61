//! sevit-data
