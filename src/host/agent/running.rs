//! `agent::start` and `agent::wait_any`: several agents at once. `start`
//! returns a handle to an agent running under the same supervision as
//! `agent::run`; `wait_any(handles)` drives them all (one poll(2) loop reads
//! every agent's output and feeds its adapter) until the first ends, and
//! returns its result. The others run on while the workflow deals with it.

use std::cell::RefCell;
use std::rc::Rc;

use rhai::{Array, Dynamic, Engine, Map};

use super::run::{start, Running, Started};
use crate::context::SharedHost;
use crate::host::{fail, Fallible};
use crate::supervise::drive_first;

/// A started agent, as scripts hold it.
#[derive(Clone)]
pub(crate) struct AgentRun(Rc<RefCell<Slot>>);

enum Slot {
    Running(Box<Running>),
    /// Ended before it could run (not installed, after Ctrl-C).
    Ended(Map),
    /// Its result was handed out.
    Taken,
}

/// `agent::start(name, request)` -> a handle for `agent::wait_any`.
pub(super) fn start_agent(host: &SharedHost, engine: &Engine, name: &str, req: &Map) -> Fallible<AgentRun> {
    let slot = match start(host, engine, name, req)? {
        Started::Running(agent) => Slot::Running(agent),
        Started::Ended(result) => Slot::Ended(result),
    };
    Ok(AgentRun(Rc::new(RefCell::new(slot))))
}

/// `agent::wait_any(handles)` -> `#{index, result}`: the first of the
/// handles to end, and its result map (as `agent::run` returns it).
pub(super) fn wait_any(host: &SharedHost, engine: &Engine, handles: &Array) -> Fallible<Map> {
    let mut runs = Vec::with_capacity(handles.len());
    for (i, handle) in handles.iter().enumerate() {
        let Some(run) = handle.read_lock::<AgentRun>() else {
            return fail(format!(
                "agent::wait_any: handles[{i}] is {}, not a started agent",
                handle.type_name()
            ));
        };
        if runs.iter().any(|other: &AgentRun| Rc::ptr_eq(&other.0, &run.0)) {
            return fail(format!("agent::wait_any: handles[{i}] is in the list twice"));
        }
        runs.push(run.clone());
    }
    if runs.is_empty() {
        return fail("agent::wait_any: no agents to wait for (the list is empty)");
    }
    for (i, run) in runs.iter().enumerate() {
        let mut slot = run.0.borrow_mut();
        match &*slot {
            Slot::Taken => {
                return fail(format!("agent::wait_any: handles[{i}] has ended and was waited for already"))
            }
            Slot::Ended(_) => {
                let Slot::Ended(result) = std::mem::replace(&mut *slot, Slot::Taken) else { unreachable!() };
                return Ok(first(i, result));
            }
            Slot::Running(_) => {}
        }
    }
    let mut slots: Vec<_> = runs.iter().map(|run| run.0.borrow_mut()).collect();
    let (mut drivens, mut states) = (Vec::new(), Vec::new());
    for slot in &mut slots {
        let Slot::Running(agent) = &mut **slot else { unreachable!("every slot is running") };
        let Running { driven, state } = &mut **agent;
        drivens.push(driven);
        states.push(state);
    }
    let ended =
        drive_first(&mut drivens, |i, stream, bytes, cut| states[i].output(host, engine, stream, bytes, cut));
    let (i, ending) = ended?;
    let result = states[i].end(host, engine, Ok(ending))?;
    drop((drivens, states));
    *slots[i] = Slot::Taken;
    Ok(first(i, result))
}

fn first(index: usize, result: Map) -> Map {
    let mut map = Map::new();
    map.insert("index".into(), Dynamic::from(i64::try_from(index).unwrap_or(i64::MAX)));
    map.insert("result".into(), result.into());
    map
}
