//! Plugin code runs guarded: its error or panic becomes the text the host logs.
//!
//! An error is shown with its whole chain of causes (`reading /etc/x.json: No such file
//! or directory (os error 2)`), as `anyhow` shows one with `{:#}`: the top message
//! alone often lacks what the user needs (which file, which key). A cause whose text
//! the message before it already ends with is not repeated (error types that print
//! their source in their own message).

use ipc::panic::catch_panic;

/// The error's message and those of its causes, joined with `: `.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !more.is_empty() && !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// Runs `f`, turning an error (with its chain) or a panic into the text the host shows.
pub(crate) fn guarded<T>(f: impl FnOnce() -> crate::Result<T>) -> Result<T, String> {
    match catch_panic(f) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(chain(e.as_ref())),
        Err(panic) => Err(format!("panicked: {panic}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the log file '/x/y.log'")]
    struct Open(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("reactor failed: {0}")]
    struct Repeats(#[source] std::io::Error);

    fn not_found() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::NotFound)
    }

    #[test]
    fn an_error_shows_its_causes_once_each() {
        let e = guarded::<()>(|| Err(Open(not_found()).into())).unwrap_err();
        assert_eq!(e, "cannot open the log file '/x/y.log': entity not found");
        let e = guarded::<()>(|| Err(Repeats(not_found()).into())).unwrap_err();
        assert_eq!(e, "reactor failed: entity not found", "no repeat");
    }

    #[test]
    fn a_panic_shows_its_message() {
        let e = guarded::<()>(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(e, "panicked: boom 7");
    }
}
