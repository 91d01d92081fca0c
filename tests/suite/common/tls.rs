//! Test certificates for an https stand-in, made with the `openssl` command.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Test certificates made by [`tls_certificates`].
pub struct Certificates {
    /// The test CA (PEM), for `[gitlab] ca_file`.
    pub ca: PathBuf,
    /// The server certificate for `127.0.0.1` (PEM), signed by the CA.
    pub cert: PathBuf,
    /// The server certificate's private key (PEM).
    pub key: PathBuf,
}

/// Makes a test CA and a certificate for `127.0.0.1` signed by it in
/// `dir`, with the `openssl` command (Debian package `openssl`; .ci/run
/// installs it); panics when that fails.
pub fn tls_certificates(dir: &Path) -> Certificates {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run openssl (Debian package openssl; .ci/run installs it): {e}")
            });
        assert!(
            out.status.success(),
            "openssl {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // rustls refuses a CA certificate as the server's own: use two.
    fs::write(
        dir.join("leaf.ext"),
        "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n\
         extendedKeyUsage = serverAuth\n",
    )
    .expect("write leaf.ext");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let ca = [
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=gitlab-mailgate test CA",
    ];
    let leaf = [
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=127.0.0.1",
    ];
    let sign = [
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ];
    openssl(&[&["req", "-x509"][..], &ec, &ca].concat());
    openssl(&[&["req"][..], &ec, &leaf].concat());
    openssl(&sign);
    Certificates {
        ca: dir.join("ca.pem"),
        cert: dir.join("leaf.pem"),
        key: dir.join("leaf.key"),
    }
}
