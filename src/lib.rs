//! aloop: a small host that runs coding-agent workflows written in Rhai.
//!
//! `src/` knows files, JSON, templates, git, processes, time and terminals;
//! the workflows themselves live in `scripts/` and `prompts/`.
//!
//! The public modules and items are what `main.rs` and the fuzz targets
//! under `fuzz/` use; everything else is `pub(crate)`.

pub mod app;
pub(crate) mod budget;
pub mod cancel;
pub(crate) mod cli;
pub(crate) mod context;
pub mod counting_alloc;
pub(crate) mod engine;
pub mod error;
pub mod files;
pub mod host;
pub(crate) mod listing;
pub(crate) mod lookup;
pub(crate) mod manifest;
pub(crate) mod manual;
pub mod paths;
pub(crate) mod program;
pub(crate) mod scripts;
pub mod supervise;
pub(crate) mod trust;
