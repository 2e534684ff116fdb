//! docker-worker: runs Taskcluster tasks in Docker containers.
//!
//! The life of one task:
//! 1. [`worker::run`] claims it (`claimWork`, up to free capacity) and spawns
//!    [`task::claimed::run_claimed`], which owns the run until its single resolution: it serves the
//!    live log, reclaims with rotating credentials and watches for cancellation.
//! 2. [`task::Engine::run`] validates the payload, gets the image, creates, attaches, starts and
//!    supervises the container (exit, maxRunTime, abort), collects artifacts and removes the
//!    container, returning a [`task::RunReport`] whose resolution [`resolution::resolve`] decided.
//! 3. `run_claimed` uploads the log, turns `live.log` into a link, and reports the resolution once.
//!
//! `docker-worker run` ([`local::run`]) drives the same engine with a local directory instead of the
//! queue.
//!
//! Module map (each file owns one thing):
//! - [`config`]: worker settings (file + env + CLI), validated once.
//! - [`aws`]: EC2 instance metadata and the spot termination notice.
//! - [`payload`]: the task payload types and their validation.
//! - [`docker`]: a thin wrapper over the Docker API (images, containers, archives, labels).
//! - [`livelog`]: the task log: one writer, a backing file, many live readers, the HTTP server.
//! - [`task`]: one task from start to outcome (the engine).
//! - [`artifacts`]: container tar stream to artifact sink, streamed.
//! - [`resolution`]: outcome to queue resolution, the only mapping.
//! - [`local`]: `docker-worker run`, one task with a local sink.
//! - [`queue`]: the Taskcluster queue client.
//! - [`worker`]: the claim loop (`docker-worker start`).
//! - [`deploy`]: `dw-deploy`, baking host images with packer.
//! - [`testkit`]: fake queue, image builder, suites and benchmarks for `dw-test`.

pub mod artifacts;
pub mod aws;
pub mod config;
pub mod deploy;
pub mod docker;
pub mod livelog;
pub mod local;
pub mod payload;
pub mod queue;
pub mod resolution;
pub mod task;
pub mod testkit;
pub mod worker;
