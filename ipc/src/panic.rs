//! Panics at a boundary: the host's actor handlers and session threads, and a plugin's
//! `setup`, `accept` and `handle`, all turn a panic into an error with its message
//! rather than let it unwind further.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `work`, returning its panic's message as an error instead of unwinding.
///
/// The caller owns what `work` touched and must treat it as suspect after a panic
/// (stop the actor, end the session, report the endpoint failed): that is why unwind
/// safety is asserted here.
pub fn catch_panic<R>(work: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(work)).map_err(|payload| panic_message(payload.as_ref()))
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else if let Some(text) = payload.downcast_ref::<&'static str>() {
        (*text).to_owned()
    } else {
        "a panic with a non-text payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message() {
        assert_eq!(catch_panic(|| 7), Ok(7));
        assert_eq!(
            catch_panic(|| -> () { panic!("boom {}", 42) }),
            Err("boom 42".to_owned())
        );
        assert_eq!(
            catch_panic(|| -> () { panic!("static") }),
            Err("static".to_owned())
        );
        assert_eq!(
            catch_panic(|| std::panic::panic_any(5_u8)),
            Err("a panic with a non-text payload".to_owned())
        );
    }
}
