//! The binary documents its configuration, flags and `TRAWL_*` variables alike.

use std::process::Command;

#[test]
fn help_lists_flags_with_their_environment_variables() {
    let output = Command::new(env!("CARGO_BIN_EXE_trawl-api"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("[env: TRAWL_DATABASE_URL="), "{help}");
}
