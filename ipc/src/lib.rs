//! Receptor's event model and the transport that carries it between processes.
//!
//! Host and plugins share this crate: the events they exchange, the bookkeeping that
//! turns full node lists into changes, and the two channels between a plugin process and
//! the host (a control socket for the life cycle, shared-memory rings for the events).
//! Nearly all of the workspace's `unsafe` code lives here, fenced in [`sys`].
//!
//! # Layout
//! - [`event`]: `NodeInfo`, `NodeStatus`, `Event`, the per-watcher `Book`, and
//!   `Pending`, the coalescing backlog of a slow reactor.
//! - [`codec`]: bincode encoding of events and batches, with size limits for untrusted input.
//! - [`sys`]: the raw OS calls (sealed memory files, mmap, futex semaphores in a
//!   segment, descriptor passing) and their `unsafe`.
//! - [`shm`]: `SharedSegment`, a shared-memory segment of fixed size and its descriptor.
//! - [`names`]: ring base names, and `sweep_stale` for what older hosts left in `/dev/shm`.
//! - [`ring`]: `ShmRing`, the single-producer single-consumer record ring.
//! - [`records`]: `Records`, byte records in one buffer (a drained batch, a piece).
//! - [`control`]: the control protocol: frames, handshake, requests and both ends.
//! - [`panic`]: turning a panic at a boundary into an error with its message.
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod codec;
pub mod control;
pub mod event;
pub mod names;
pub mod panic;
pub mod records;
pub mod ring;
pub mod shm;
pub mod sys;
