//! The one integration-test binary: the real `aloop` in temp projects with
//! real git repositories and fake agent programs.

mod support;

mod agents;
mod bad_input;
mod cloud;
mod demo;
mod doctor;
mod documents;
mod faults;
mod hardening_fs;
mod host;
mod iterate;
mod limits;
mod listings;
mod manual;
mod overnight;
mod parallel;
mod processes;
mod real_agents;
mod story_loop;
mod trust;
