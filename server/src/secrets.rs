//! Random values for ids and secrets, from `rand`'s thread-local CSPRNG (seeded by the OS).

use rand::RngCore;
use sha2::{Digest, Sha256};

/// `bytes` random bytes from the OS generator, as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex(&buf)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// A new secret token with a typed prefix (`shs_` session, `sha_` API, `shi_` invite, `she_` email
/// link, `shp_` probe) and 256 random bits, with the SHA-256 digest that is all the database keeps.
pub fn new_token(prefix: &str) -> (String, String) {
    let token = format!("{prefix}{}", random_hex(32));
    let hash = sha256_hex(&token);
    (token, hash)
}

/// A random opaque id for a row (128 bits, hex).
pub fn new_id() -> String {
    random_hex(16)
}

pub fn sha256_hex(value: &str) -> String {
    hex(&sha256(value))
}

pub fn sha256(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(
            super::sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn random_hex_has_the_requested_length_and_varies() {
        let a = super::random_hex(16);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, super::random_hex(16));
    }

    #[test]
    fn tokens_are_prefixed_and_stored_as_their_digest() {
        let (token, hash) = super::new_token("sha_");
        assert!(token.starts_with("sha_") && token.len() == 68);
        assert_eq!(hash, super::sha256_hex(&token));
        assert_eq!(hash.len(), 64);
        assert!(super::constant_time_eq(&token, &token.clone()));
        assert!(!super::constant_time_eq(&token, &hash));
    }
}
