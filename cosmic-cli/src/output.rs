//! Printing results for a person or, with `--json`, for a script; and failures, as one line.

use std::error::Error;
use std::fmt;
use std::io::{self, IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// How results are printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Text for a person.
    Human,
    /// One JSON document (`--json`).
    Json,
}

/// A command's result: JSON through serde, text through [`Report::human`].
pub(crate) trait Report: Serialize {
    /// Writes the result for a person.
    fn human(&self, out: &mut dyn Write) -> io::Result<()>;
}

/// Prints `report` on stdout in `format`. A closed pipe (`cosmic ... | head`) is not an error.
pub(crate) fn print(report: &impl Report, format: Format) -> Result<(), Failure> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let written = match format {
        Format::Human => report.human(&mut out),
        Format::Json => serde_json::to_writer_pretty(&mut out, report)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out)),
    }
    .and_then(|()| out.flush());
    match written {
        Err(error) if error.kind() != io::ErrorKind::BrokenPipe => {
            Err(Failure::because("failed to write the result", &error))
        }
        _ => Ok(()),
    }
}

/// Why a command failed, as one line for a person.
#[derive(Debug)]
pub(crate) struct Failure {
    message: String,
    /// Whether the command printed its result before failing (a damaged image's header, say);
    /// if not, `--json` prints the failure as `{"error": ...}` so a script finds it on stdout.
    reported: bool,
}

impl Failure {
    /// A failure saying `message`.
    pub(crate) fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            reported: false,
        }
    }

    /// A failure saying `context`, then `error` and every error below it.
    pub(crate) fn because(context: impl fmt::Display, error: &dyn Error) -> Failure {
        Failure::new(format!("{context}: {}", chain(error)))
    }

    /// Marks the failure as following a printed result.
    pub(crate) fn after_report(mut self) -> Failure {
        self.reported = true;
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Prints a failure: one line on stderr, and with `--json` an `{"error": ...}` document on
/// stdout unless a result was printed already.
pub(crate) fn report_failure(failure: &Failure, format: Format) {
    if format == Format::Json && !failure.reported {
        #[derive(Serialize)]
        struct JsonError<'a> {
            error: &'a str,
        }
        let mut out = io::stdout().lock();
        let _ = serde_json::to_writer(
            &mut out,
            &JsonError {
                error: &failure.message,
            },
        );
        let _ = writeln!(out);
    }
    let _ = writeln!(io::stderr().lock(), "cosmic: error: {}", failure.message);
}

/// `error` and its sources, joined by `: ` on one line (a source whose text the line already
/// holds is not repeated).
pub(crate) fn chain(error: &dyn Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

/// A progress bar on stderr for `len` units of work, hidden when the result is JSON or stderr
/// is not a terminal (a script, a log file).
pub(crate) fn progress_bar(len: u64, format: Format, template: &str) -> ProgressBar {
    if format == Format::Json || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// A size for a person: bytes, or KiB / MiB / GiB with one decimal.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 << 30), "5.0 GiB");
    }

    #[test]
    fn chains_join_sources_once() {
        let inner = io::Error::other("disk on fire");
        let failure = Failure::because("cannot read x", &inner);
        assert_eq!(failure.to_string(), "cannot read x: disk on fire");
    }
}
