//! Room for the tests that open connections by the thousand: both of their ends live in the
//! test process, with the host's own files.

/// Raises this process's `RLIMIT_NOFILE` towards 16,384 (within the hard limit), and fails
/// the test, saying so, if fewer than `at_least` descriptors can be had.
pub fn raise_file_limit(at_least: libc::rlim_t) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        let wanted = 16_384.min(limit.rlim_max);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
        assert!(
            limit.rlim_cur >= at_least,
            "RLIMIT_NOFILE {} is too low for these tests (they need {at_least}; the hard limit \
             is {})",
            limit.rlim_cur,
            limit.rlim_max
        );
    }
}
