//! Printing an error with its causes.
//!
//! cosmic's errors follow the convention anyhow and eyre rely on: an error's `Display` says what
//! its own layer did, and [`source`](std::error::Error::source) carries the cause, whose text is
//! never repeated. Printing only the outer error therefore hides the cause; [`ErrorChain`]
//! prints all of it.

use std::error::Error;
use std::fmt;

/// Displays an error followed by each of its causes, separated by `": "` (like anyhow's `{:#}`).
///
/// ```
/// use cosmic_runtime::ErrorChain;
///
/// // A regular file where a store's folder should be.
/// let file = std::env::temp_dir().join(format!("cosmic-chain-doc-{}", std::process::id()));
/// std::fs::write(&file, b"not a folder")?;
/// let error = cosmic_runtime::checkpoint::FileStore::open(&file).unwrap_err();
/// let text = ErrorChain(&error).to_string();
/// std::fs::remove_file(&file)?;
/// // This layer's message, then its cause's.
/// assert!(text.starts_with("failed to open the file store at "), "{text}");
/// assert!(text.ends_with(": it is a file, not a folder; give a file store a folder of its own"), "{text}");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The messages of an error and of each of its causes, outermost first.
pub fn messages(error: &(dyn Error + '_)) -> Vec<String> {
    let mut out = vec![error.to_string()];
    let mut cause = error.source();
    while let Some(error) = cause {
        out.push(error.to_string());
        cause = error.source();
    }
    out
}

/// Test helper: asserts that no message in `error`'s chain repeats its cause's text (the
/// convention above); the chain must also end (no cycles past 64 causes).
#[cfg(test)]
pub(crate) fn assert_no_repeats(error: &(dyn Error + '_)) {
    let messages = messages(error);
    assert!(messages.len() < 64, "a cycle in {messages:?}");
    for pair in messages.windows(2) {
        assert!(
            !pair[1].is_empty() && !pair[0].contains(&pair[1]),
            "`{}` repeats its cause `{}`",
            pair[0],
            pair[1]
        );
    }
}
