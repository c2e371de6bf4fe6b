//! aloop: a small host that runs coding-agent workflows written in Rhai.
//!
//! `src/` knows files, JSON, templates, git, processes, time and terminals;
//! the workflows themselves live in `scripts/` and `prompts/`.

pub mod app;
pub mod atomic;
mod budget;
pub mod cancel;
pub mod cli;
mod context;
pub mod engine;
pub mod error;
pub mod host;
pub mod lookup;
pub mod manifest;
pub mod memory;
pub mod paths;
pub mod process;
pub mod program;
mod scripts;
pub mod trust;
