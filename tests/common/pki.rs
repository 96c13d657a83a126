//! Certificates made with openssl(1) for one test.

/// Certificates made with openssl(1) for one test: a CA, a server
/// certificate for 127.0.0.1/localhost, a client certificate from the CA,
/// and a client certificate from another CA.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// Make them in a new temporary directory.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl is installed");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        for ca in ["ca", "rogue-ca"] {
            run(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=respseal test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ]);
        }
        std::fs::write(dir.path().join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("ext");
        for (name, ca) in [("server", "ca"), ("server2", "ca"), ("client", "ca"), ("rogue", "rogue-ca")] {
            run(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ]);
            run(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.crt"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.ext",
                "-out",
                &format!("{name}.crt"),
            ]);
        }
        Pki { dir }
    }

    /// The path of one of its files (`ca.crt`, `client.key` …).
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().expect("utf-8").to_string()
    }
}

/// `redis-cli --tls` against `port`, with the certificate `cert` (and its key) if given.
pub fn tls_cli(pki: &Pki, port: u16, args: &[&str], cert: Option<&str>) -> String {
    let mut cmd = std::process::Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "--tls", "--cacert", &pki.path("ca.crt")]);
    if let Some(name) = cert {
        cmd.args(["--cert", &pki.path(&format!("{name}.crt")), "--key", &pki.path(&format!("{name}.key"))]);
    }
    let out = cmd.args(args).stdin(std::process::Stdio::null()).output().expect("redis-cli");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)).trim().to_string()
}
