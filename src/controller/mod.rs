//! Controllers: one module per concern.

pub mod consumers;
pub mod token;
