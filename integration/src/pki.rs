//! Certificates made by the tests themselves with rcgen: a CA, a server certificate it signed
//! for `localhost` / 127.0.0.1, one for another host name, a client certificate, and a second
//! CA that signed nothing the broker shows.

use std::path::PathBuf;

use kgroup::embedded::BrokerTls;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use crate::unique_name;

/// The certificates, as PEM files in a directory removed on drop: `ca.pem`, `other-ca.pem`,
/// `server.pem`/`.key`, `wrong-host.pem`/`.key` and `client.pem`/`.key`.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = std::env::temp_dir().join(unique_name("kgroup-pki"));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki { dir };
        let ca = pki.authority("ca", "kgroup test CA");
        pki.authority("other-ca", "kgroup untrusted CA");
        pki.leaf("server", &["localhost", "127.0.0.1"], &ca);
        pki.leaf("wrong-host", &["broker.elsewhere.invalid"], &ca);
        pki.leaf("client", &["kgroup-client"], &ca);
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn path_str(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn authority(&self, name: &str, common_name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, common_name);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(self.path(&format!("{name}.pem")), ca.pem()).unwrap();
        ca
    }

    fn leaf(&self, name: &str, names: &[&str], ca: &CertifiedIssuer<'static, KeyPair>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let cert = params.signed_by(&key, ca).unwrap();
        std::fs::write(self.path(&format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{name}.key")), key.serialize_pem()).unwrap();
    }

    /// The certificate and key `name` for a broker's TLS listener.
    pub fn broker_tls(&self, name: &str) -> BrokerTls {
        BrokerTls { cert: self.path(&format!("{name}.pem")), key: self.path(&format!("{name}.key")) }
    }
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
