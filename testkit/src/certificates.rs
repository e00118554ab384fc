//! Client certificates made with openssl, as a cluster's administrator makes them for a user.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A client certificate (and its key) for `common_name`, signed by the CA `ca_cert` with `ca_key`,
/// written into `dir`. An X.509 v3 certificate with `clientAuth`, as rustls requires.
pub fn client(ca_cert: &Path, ca_key: &Path, common_name: &str, dir: &Path) -> (PathBuf, PathBuf) {
    let stem = common_name.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    let (cert, key) = (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")));
    let (request, extensions) = (dir.join(format!("{stem}.csr")), dir.join(format!("{stem}.ext")));
    std::fs::write(&extensions, "extendedKeyUsage=clientAuth\n").expect("write the extensions");
    let mut make_request = Command::new("openssl");
    make_request
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={common_name}"),
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&request);
    let mut sign = Command::new("openssl");
    sign.args(["x509", "-req", "-days", "1", "-CAcreateserial"])
        .arg("-in")
        .arg(&request)
        .arg("-CA")
        .arg(ca_cert)
        .arg("-CAkey")
        .arg(ca_key)
        .arg("-CAserial")
        .arg(dir.join(format!("{stem}.srl")))
        .arg("-extfile")
        .arg(&extensions)
        .arg("-out")
        .arg(&cert);
    for mut command in [make_request, sign] {
        let output = command.output().expect("run openssl");
        assert!(output.status.success(), "{command:?}: {output:?}");
    }
    (cert, key)
}
