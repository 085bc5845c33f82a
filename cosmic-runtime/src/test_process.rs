//! Tests that run this very test binary again as a child process.
//!
//! Under `scripts/cross-test.sh` the binary is foreign (aarch64, s390x) and runs under
//! user-mode QEMU without binfmt_misc, so it cannot be exec'd directly: the script exports
//! `CROSS_TEST_RUNNER=qemu-<arch>` and the child must be started through it.

use std::process::Command;

/// A command that runs this test binary again, through the cross-test runner when one is set.
pub(crate) fn this_test_binary() -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    match std::env::var_os("CROSS_TEST_RUNNER") {
        Some(runner) => {
            let mut command = Command::new(runner);
            command.arg(exe);
            command
        }
        None => Command::new(exe),
    }
}
