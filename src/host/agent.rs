//! `agent::` — runs a coding agent through its adapter script. (Filled in by
//! the agent-adapter work; the namespace is registered so scripts can test
//! for it.)

use rhai::Module;

use crate::engine::SharedHost;

pub fn module(_host: &SharedHost) -> Module {
    Module::new()
}
