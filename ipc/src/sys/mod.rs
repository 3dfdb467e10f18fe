//! The raw OS calls of the workspace and the `unsafe` they need, each behind a safe
//! function whose contract this module keeps (being written: see issue 4).

pub mod process;
