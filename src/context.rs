//! What the primitives share for one run of `aloop`: the sandbox roots, the
//! script and prompt lookup, trust, the budget and the compiled scripts.
//! The engine factory (`engine`) and every primitive (`host`) depend on
//! this module; it depends on neither.

use std::path::PathBuf;
use std::rc::Rc;

use anyhow::Result;
use rhai::{Dynamic, EvalAltResult, Map};

use crate::budget::Budget;
use crate::error::HostError;
use crate::lookup::{Found, Kind, Layer, Lookup};
use crate::paths::Roots;
use crate::scripts::Scripts;
use crate::trust::{Status, Trust};

/// Everything the primitives share for one run of `aloop`.
pub(crate) struct Host {
    pub(crate) roots: Roots,
    pub(crate) lookup: Lookup,
    pub(crate) trust: Trust,
    /// Whether stdin and stderr are terminals (confirmations and live views).
    pub(crate) interactive: bool,
    pub(crate) version: &'static str,
    pub(crate) budget: Rc<Budget>,
    pub(crate) scripts: Scripts,
}

pub(crate) type SharedHost = Rc<Host>;

impl Host {
    /// Fails when a limit set in the environment is not a whole number.
    pub(crate) fn new(roots: Roots, interactive: bool) -> Result<SharedHost> {
        Ok(Rc::new(Host {
            lookup: Lookup::new(&roots.loop_dir(), &roots.home),
            trust: Trust::new(&roots.home),
            roots,
            interactive,
            version: env!("CARGO_PKG_VERSION"),
            budget: Rc::new(Budget::from_env()?),
            scripts: Scripts::default(),
        }))
    }

    /// Finds a script by name and refuses repository scripts that the user has
    /// not trusted (a cloned repository must not run code without consent).
    pub(crate) fn find_script(&self, name: &str) -> Result<Found, HostError> {
        let found =
            self.lookup.find(Kind::Script, name).map_err(HostError::Other)?.ok_or_else(|| {
                HostError::Other(format!("no script named '{name}' (see `aloop script list`)"))
            })?;
        self.check_trust(&found)?;
        Ok(found)
    }

    /// Refuses a repository script the user has not trusted.
    pub(crate) fn check_trust(&self, found: &Found) -> Result<(), HostError> {
        if found.layer != Layer::Repo {
            return Ok(());
        }
        let path = found.path.as_deref().expect("repo files have a path");
        let status = self.trust.status(path, &found.text).map_err(|e| HostError::Other(format!("{e:#}")))?;
        match status {
            Status::Trusted => Ok(()),
            other => Err(HostError::Other(format!(
                "refusing to run {} ({other}): repository scripts run only with your consent; \
                 review it, then run `aloop trust`",
                path.display()
            ))),
        }
    }

    /// Turns a failure of the script from `origin` into the error `main` reports.
    pub(crate) fn script_error(&self, origin: &str, err: &EvalAltResult) -> anyhow::Error {
        self.scripts.script_error(origin, err, &self.lookup, &self.budget)
    }

    /// `CTX`: facts about this run that scripts need.
    pub(crate) fn context_map(&self) -> Map {
        let path = |p: &PathBuf| Dynamic::from(p.display().to_string());
        let mut ctx = Map::new();
        ctx.insert("project_root".into(), path(&self.roots.project));
        ctx.insert("loop_dir".into(), path(&self.roots.loop_dir()));
        ctx.insert("home".into(), path(&self.roots.home));
        ctx.insert("version".into(), self.version.into());
        ctx.insert("interactive".into(), self.interactive.into());
        let exe = std::env::current_exe().map_or_else(|_| "aloop".into(), |p| p.display().to_string());
        ctx.insert("exe".into(), exe.into());
        ctx
    }
}
