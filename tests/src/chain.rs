//! Checks on error chains: cosmic's errors say what their own layer did in `Display` and carry
//! the cause in `source()`, never repeating its text (the convention anyhow and eyre rely on).

use std::error::Error;

/// The whole chain as one line, `outer: cause: cause's cause`.
pub fn text(error: &(dyn Error + '_)) -> String {
    cosmic::ErrorChain(error).to_string()
}

/// The message of each link, outermost first.
pub fn messages(error: &(dyn Error + '_)) -> Vec<String> {
    let mut out = vec![error.to_string()];
    let mut cause = error.source();
    while let Some(next) = cause {
        out.push(next.to_string());
        cause = next.source();
        assert!(out.len() < 64, "a cycle in the chain: {out:?}");
    }
    out
}

/// Panics if a message in `error`'s chain contains the message of its cause, or a message is
/// empty.
pub fn assert_no_repeats(error: &(dyn Error + '_)) {
    let messages = messages(error);
    for pair in messages.windows(2) {
        assert!(
            !pair[1].is_empty() && !pair[0].contains(pair[1].as_str()),
            "`{}` repeats its cause `{}` (whole chain: {messages:?})",
            pair[0],
            pair[1]
        );
    }
    assert!(
        messages.iter().all(|message| !message.is_empty()),
        "{messages:?}"
    );
}
