//! Random values for ids and secrets, from `rand`'s thread-local CSPRNG (seeded by the OS).

use rand::RngCore;

/// `bytes` random bytes from the OS generator, as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_hex_has_the_requested_length_and_varies() {
        let a = super::random_hex(16);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, super::random_hex(16));
    }
}
