//! Controllers: one module per concern.

pub mod token;
