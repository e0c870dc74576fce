//! The login exchange's crypto: the MD5 challenge key.

use md5::{Digest, Md5};

/// `Key:` for an MD5 login: hex of md5(challenge + secret), as manager.c computes it.
pub fn md5_key(challenge: &str, secret: &str) -> String {
    let mut h = Md5::new();
    h.update(challenge.as_bytes());
    h.update(secret.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_vector() {
        // md5("abc"), split between challenge and secret.
        assert_eq!(super::md5_key("ab", "c"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(super::md5_key("", ""), "d41d8cd98f00b204e9800998ecf8427e");
    }
}
