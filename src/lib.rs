//! aloop: a small host that runs coding-agent workflows written in Rhai.
//!
//! `src/` knows files, JSON, templates, git, processes, time and terminals;
//! the workflows themselves live in `scripts/` and `prompts/`.

pub mod app;
mod budget;
pub mod cancel;
pub mod cli;
mod context;
pub mod counting_alloc;
pub mod engine;
pub mod error;
pub mod files;
pub mod host;
pub mod lookup;
pub mod manifest;
pub mod paths;
pub mod program;
mod scripts;
pub mod supervise;
pub mod trust;
