//! Who may talk to the broker: CURVE key pairs, and the ZAP handler that checks an agent's
//! public key against the broker's allow-list and ties it to the one server id it may speak for.
//!
//! libzmq asks a ZAP handler (RFC 27, an inproc REP socket at `inproc://zeromq.zap.01`) for every
//! CURVE handshake. There is one per process (per context), so it serves every broker in the
//! process, each under its own ZAP domain with its own allow-list. The server id it returns as
//! the ZAP User-Id travels with every message of that connection, and the broker refuses a
//! `hello` for any other server.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use tracing::{info, warn};

/// A CURVE key pair (Z85 text, 40 characters each).
#[derive(Clone)]
pub struct KeyPair {
    pub public: String,
    secret: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyPair {{ public: {}, secret: *** }}", self.public)
    }
}

impl KeyPair {
    pub fn generate() -> Result<KeyPair, String> {
        let k = zmq::CurveKeyPair::new()
            .map_err(|e| format!("cannot make a CURVE key pair (libzmq without libsodium?): {e}"))?;
        Ok(KeyPair {
            public: zmq::z85_encode(&k.public_key).map_err(|e| e.to_string())?,
            secret: zmq::z85_encode(&k.secret_key).map_err(|e| e.to_string())?,
        })
    }

    pub fn secret_bytes(&self) -> Result<Vec<u8>, String> {
        decode_key(&self.secret)
    }

    pub fn public_bytes(&self) -> Result<Vec<u8>, String> {
        decode_key(&self.public)
    }

    /// Writes `<path>` (the pair, mode 0600) and [`public_key_path`] (the public key).
    pub fn write(&self, path: &Path, name: &str) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let text = format!(
            "# hintbus CURVE key pair of {name}. Keep secret: mode 0600, readable by the hintbus user only.\npublic = {}\nsecret = {}\n",
            self.public, self.secret
        );
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        f.write_all(text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let pub_path = public_key_path(path);
        std::fs::write(&pub_path, format!("{}\n", self.public)).map_err(|e| format!("{}: {e}", pub_path.display()))?;
        Ok(())
    }

    /// Reads a key file written by [`KeyPair::write`], refusing one that others can read.
    pub fn read(path: &Path) -> Result<KeyPair, String> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "{}: the secret key is readable by others (mode {:o}): chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let field = |k: &str| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(n, _)| n.trim() == k)
                .map(|(_, v)| v.trim().to_string())
                .ok_or_else(|| format!("{}: no {k} = line", path.display()))
        };
        let pair = KeyPair {
            public: field("public")?,
            secret: field("secret")?,
        };
        pair.public_bytes()
            .and(pair.secret_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(pair)
    }
}

/// Where [`KeyPair::write`] puts the public key: `<path>.pub` (`broker.key` -> `broker.key.pub`),
/// appended rather than replacing the extension, so `a.key` and `a.secret` never share one file.
/// Earlier builds wrote `broker.pub`; nothing reads either file (configs carry the key's text),
/// so pairs made then stay valid as they are.
pub fn public_key_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    name.into()
}

/// A Z85 key of 40 characters to its 32 bytes.
pub fn decode_key(z85: &str) -> Result<Vec<u8>, String> {
    let z85 = z85.trim();
    if z85.len() != 40 {
        return Err(format!("a CURVE key is 40 Z85 characters, got {}", z85.len()));
    }
    zmq::z85_decode(z85).map_err(|_| "not a Z85 key".to_string())
}

/// Public key (Z85) -> the server id it may speak for.
pub type AllowList = HashMap<String, String>;

fn registry() -> &'static RwLock<HashMap<String, Arc<AllowList>>> {
    static R: OnceLock<RwLock<HashMap<String, Arc<AllowList>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// Registers a broker's allow-list under its ZAP domain, starting the process's ZAP handler
/// the first time.
pub fn register(domain: &str, allow: AllowList) -> Result<(), String> {
    static STARTED: Mutex<bool> = Mutex::new(false);
    let mut started = STARTED.lock().expect("zap lock");
    if !*started {
        let rep = crate::transport::context()
            .socket(zmq::REP)
            .map_err(|e| e.to_string())?;
        rep.bind("inproc://zeromq.zap.01")
            .map_err(|e| format!("ZAP handler: {e}"))?;
        std::thread::Builder::new()
            .name("hintbus-zap".into())
            .spawn(move || zap_loop(rep))
            .map_err(|e| e.to_string())?;
        *started = true;
    }
    registry()
        .write()
        .expect("registry lock")
        .insert(domain.to_string(), Arc::new(allow));
    Ok(())
}

pub fn unregister(domain: &str) {
    registry().write().expect("registry lock").remove(domain);
}

fn zap_loop(rep: zmq::Socket) {
    loop {
        let Ok(req) = rep.recv_multipart(0) else { continue };
        // version, request id, domain, address, identity, mechanism, credentials...
        let get = |i: usize| {
            req.get(i)
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .unwrap_or_default()
        };
        let (request_id, domain, address, mechanism) =
            (req.get(1).cloned().unwrap_or_default(), get(2), get(3), get(5));
        let verdict = if mechanism != "CURVE" {
            Err("CURVE required".to_string())
        } else {
            let key = req.get(6).and_then(|k| zmq::z85_encode(k).ok()).unwrap_or_default();
            let allow = registry().read().expect("registry lock").get(&domain).cloned();
            match allow.as_ref().and_then(|a| a.get(&key)) {
                Some(server) => Ok(server.clone()),
                None => Err(format!("key {key} is not in the allow-list")),
            }
        };
        let reply: Vec<Vec<u8>> = match verdict {
            Ok(server) => {
                info!(%server, %address, "agent key accepted");
                vec![
                    b"1.0".to_vec(),
                    request_id,
                    b"200".to_vec(),
                    b"OK".to_vec(),
                    server.into_bytes(),
                    Vec::new(),
                ]
            }
            Err(why) => {
                warn!(%address, %why, "connection refused");
                vec![
                    b"1.0".to_vec(),
                    request_id,
                    b"400".to_vec(),
                    why.into_bytes(),
                    Vec::new(),
                    Vec::new(),
                ]
            }
        };
        let _ = rep.send_multipart(reply, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_and_refuse_loose_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("hintbus-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let k = KeyPair::generate().unwrap();
        let path = dir.join("a.key");
        k.write(&path, "a").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(public_key_path(&path), dir.join("a.key.pub"));
        assert_eq!(std::fs::read_to_string(dir.join("a.key.pub")).unwrap().trim(), k.public);
        let back = KeyPair::read(&path).unwrap();
        assert_eq!(back.public, k.public);
        assert!(!format!("{back:?}").contains(&k.secret));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(KeyPair::read(&path).unwrap_err().contains("chmod 600"));
        assert!(decode_key("short").is_err());
    }
}
