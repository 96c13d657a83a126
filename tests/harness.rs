//! The test harness itself: the suite's summary must never read as "0
//! failed" when something did not run, and the Tcl-suite driver refuses a
//! run that would not go through respseal.

use std::io::Write;
use std::process::Command;

fn summary(log: &str, status: i32) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(log.as_bytes()).expect("write");
    let out = Command::new("awk")
        .arg("-f")
        .arg(format!("{root}/scripts/test-summary.awk"))
        .arg("-v")
        .arg(format!("status={status}"))
        .arg(f.path())
        .output()
        .expect("awk");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().lines().last().unwrap_or_default().to_string()
}

#[test]
fn the_summary_counts_binaries_that_gave_no_result_as_failed() {
    let ok = "     Running tests/a.rs (target/debug/deps/a)\n\ntest result: ok. 3 passed; 0 failed; 0 ignored\n";
    assert_eq!(summary(ok, 0), "3 passed, 0 failed");
    let crashed = format!(
        "{ok}     Running tests/b.rs (target/debug/deps/b)\nerror: test failed, to rerun pass `--test b`\n\
         Caused by: process didn't exit successfully (signal: 9, SIGKILL)\n     Running tests/c.rs (x)\n\
         test result: FAILED. 1 passed; 2 failed;\n"
    );
    assert_eq!(summary(&crashed, 101), "4 passed, 3 failed");
    // A build failure prints no test result at all.
    assert_eq!(summary("error[E0308]: mismatched types\n", 101), "0 passed, 1 failed");
    assert_eq!(summary("     Running unittests src/lib.rs (x)\n", 101), "0 passed, 1 failed");
}

#[test]
fn a_tcl_suite_run_with_no_proxy_mode_fails() {
    let root = env!("CARGO_MANIFEST_DIR");
    for modes in ["", "  "] {
        let out = Command::new("bash")
            .arg(format!("{root}/tests/redis-suite/run.sh"))
            .env("RESPSEAL_SUITE_MODES", modes)
            .output()
            .expect("bash");
        assert!(!out.status.success(), "an empty RESPSEAL_SUITE_MODES passed");
        assert!(String::from_utf8_lossy(&out.stdout).contains("0 passed, 1 failed"));
    }
}
