//! The limits every script runs under: an operation budget between blocking
//! calls (a busy loop ends with an error while a long `watch` that sleeps
//! between cycles does not), a grace of operations after Ctrl-C, and the
//! memory held in big blocks (`counting_alloc`).

use std::cell::Cell;
use std::rc::Rc;

use anyhow::Result;
use rhai::{Dynamic, Engine};

use crate::cancel;
use crate::error::UsageError;

/// Operations a script may run without calling a blocking primitive, unless
/// `ALOOP_MAX_OPERATIONS` says otherwise.
const DEFAULT_OPERATION_BUDGET: u64 = 50_000_000;
/// Operations a script may still run after Ctrl-C, to record what happened.
const OPERATIONS_AFTER_INTERRUPT: u64 = 20_000_000;
/// How many operations pass between two looks at Ctrl-C and the budget.
const PROGRESS_EVERY: u64 = 256;
/// MiB a run may hold in big blocks (strings, lists, file contents), unless
/// `ALOOP_MAX_MEMORY_MB` says otherwise.
const DEFAULT_MEMORY_BUDGET_MB: u64 = 1024;

/// A limit from the environment, or `default` when it is unset or empty.
fn limit_from_env(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(text) if !text.trim().is_empty() => text.trim().parse().map_err(|_| {
            UsageError(format!("{name}='{text}' is not a whole number (leave it unset for {default})")).into()
        }),
        _ => Ok(default),
    }
}

/// What stops a script that holds more memory than its budget.
#[derive(Debug, Clone)]
struct OverMemory;

/// The operation and memory budget of one run of `aloop`.
pub(crate) struct Budget {
    /// The engine's operation count at its last look (every `PROGRESS_EVERY`).
    last_operations: Cell<u64>,
    operations: u64,
    /// The operation count at the last blocking call.
    start: Cell<u64>,
    /// Bytes the process may hold in big blocks.
    memory: usize,
    /// The operation count at the first look after Ctrl-C.
    interrupted_at: Cell<Option<u64>>,
}

impl Budget {
    /// The limits `ALOOP_MAX_OPERATIONS` and `ALOOP_MAX_MEMORY_MB` set, or
    /// the defaults; fails when one is not a whole number.
    pub(crate) fn from_env() -> Result<Self> {
        let operations = limit_from_env("ALOOP_MAX_OPERATIONS", DEFAULT_OPERATION_BUDGET)?;
        let memory_mb = limit_from_env("ALOOP_MAX_MEMORY_MB", DEFAULT_MEMORY_BUDGET_MB)?;
        Ok(Self {
            last_operations: Cell::new(0),
            operations,
            start: Cell::new(0),
            memory: usize::try_from(memory_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX),
            interrupted_at: Cell::new(None),
        })
    }

    /// Starts a new operation budget; called by every blocking primitive.
    pub(crate) fn refill(&self) {
        self.start.set(self.last_operations.get());
    }

    /// Runs `f`, which calls back into the engine (an agent adapter's
    /// functions called from inside a primitive), with its own operation
    /// count: nested calls start counting from zero, so the outer script's
    /// count is saved and restored around them.
    pub(crate) fn nested<T>(&self, f: impl FnOnce() -> T) -> T {
        let saved = (self.last_operations.get(), self.start.get(), self.interrupted_at.get());
        self.last_operations.set(0);
        self.start.set(0);
        self.interrupted_at.set(None);
        let result = f();
        self.last_operations.set(saved.0);
        self.start.set(saved.1);
        self.interrupted_at.set(saved.2);
        result
    }

    /// Makes `engine` stop a script that goes over the budget.
    pub(crate) fn enforce(self: &Rc<Self>, engine: &mut Engine) {
        let budget = Rc::clone(self);
        let memory = self.memory;
        engine.on_progress(move |ops| {
            // Memory is looked at after every operation: a string that doubles
            // each time needs only a few dozen to take gigabytes.
            if crate::counting_alloc::big_bytes() > memory {
                return Some(Dynamic::from(OverMemory));
            }
            // Looking every 256th operation is soon enough for Ctrl-C and the
            // budget, and looking at every one cost a tenth of `aloop status`.
            if ops % PROGRESS_EVERY != 0 {
                return None;
            }
            budget.progress(ops)
        });
    }

    /// A look at Ctrl-C and the operation budget: `Some` stops the script.
    fn progress(&self, ops: u64) -> Option<Dynamic> {
        self.last_operations.set(ops);
        if cancel::is_interrupted() {
            let since = *self.interrupted_at.get().get_or_insert(ops);
            self.interrupted_at.set(Some(since));
            if ops.saturating_sub(since) > OPERATIONS_AFTER_INTERRUPT {
                return Some(Dynamic::UNIT);
            }
        }
        (ops.saturating_sub(self.start.get()) > self.operations).then_some(Dynamic::UNIT)
    }

    /// Why a script was stopped with `token` (what `enforce` returned).
    pub(crate) fn exceeded(&self, token: &Dynamic) -> String {
        if token.is::<OverMemory>() {
            format!(
                "the script held more than {} MiB in strings and lists (one growing without end?); \
                 ALOOP_MAX_MEMORY_MB raises the limit",
                self.memory / (1024 * 1024)
            )
        } else {
            format!(
                "the script ran {} operations without waiting on anything (an endless loop?); \
                 ALOOP_MAX_OPERATIONS raises the limit",
                self.operations
            )
        }
    }
}
