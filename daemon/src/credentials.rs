//! Checks of the credentials an operator gives `fovead`, before serving:
//! a token must be hard to guess, and a TLS certificate and key must be PEM
//! and belong together. Each problem is said in words an operator can act
//! on (the caller names the file).

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Fewest bits of entropy a bearer token may have.
pub const MIN_TOKEN_BITS: f64 = 128.0;

/// The command the messages suggest for a good token.
pub const MAKE_TOKEN: &str = "openssl rand -hex 32";

/// Parts of values shipped as placeholders (the deploy files' secret, common
/// examples); a token containing one was never replaced.
const PLACEHOLDERS: &[&str] = &[
    "replace-with",
    "replace_with",
    "changeme",
    "change-me",
    "change_me",
    "placeholder",
    "example",
    "your-token",
    "your_token",
];

/// An estimate of a token's entropy: its length times the bits of the
/// smallest character set it is drawn from (hex, or the classes present).
pub fn token_bits(token: &str) -> f64 {
    let n = token.chars().count() as f64;
    let hex = token.chars().all(|c| c.is_ascii_hexdigit());
    let alphabet = if hex {
        16.0
    } else {
        let has = |f: fn(&char) -> bool| token.chars().any(|c| f(&c));
        let mut a = 0.0;
        if has(char::is_ascii_lowercase) {
            a += 26.0;
        }
        if has(char::is_ascii_uppercase) {
            a += 26.0;
        }
        if has(char::is_ascii_digit) {
            a += 10.0;
        }
        if has(|c| !c.is_ascii_alphanumeric()) {
            a += 32.0;
        }
        a
    };
    if alphabet <= 1.0 {
        return 0.0;
    }
    n * f64::log2(alphabet)
}

/// Ok for a token worth requiring; else why not.
pub fn check_token(token: &str) -> Result<(), String> {
    let lower = token.to_ascii_lowercase();
    if let Some(p) = PLACEHOLDERS.iter().find(|p| lower.contains(*p)) {
        return Err(format!(
            "the token contains {p:?}, a placeholder; make a real one with `{MAKE_TOKEN}`"
        ));
    }
    let distinct = {
        let mut c: Vec<char> = token.chars().collect();
        c.sort_unstable();
        c.dedup();
        c.len()
    };
    let bits = token_bits(token);
    if bits < MIN_TOKEN_BITS || distinct < 8 {
        return Err(format!(
            "the token has about {bits:.0} bits of entropy ({} characters, {distinct} distinct); at least {MIN_TOKEN_BITS:.0} are needed: make one with `{MAKE_TOKEN}`",
            token.chars().count()
        ));
    }
    Ok(())
}

/// Which file of a TLS pair a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    Cert,
    Key,
}

/// Ok when `cert` is a PEM certificate chain and `key` the PEM private key
/// of its first certificate.
pub fn check_tls(cert: &[u8], key: &[u8]) -> Result<(), (TlsFile, String)> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| (TlsFile::Cert, format!("not a PEM certificate file: {e}")))?;
    if chain.is_empty() {
        return Err((
            TlsFile::Cert,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
        (
            TlsFile::Key,
            format!("holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| (TlsFile::Key, format!("the private key cannot be used: {e}")))?;
    match rustls::sign::CertifiedKey::new(chain, signer).keys_match() {
        Ok(()) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err((
            TlsFile::Key,
            "the private key does not belong to the certificate (--tls-cert)".into(),
        )),
        // A key type whose public half rustls cannot derive: the handshake
        // will tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(e) => Err((TlsFile::Cert, format!("not a usable certificate: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_judged_by_entropy_and_placeholders() {
        assert!(check_token(&"0123456789abcdef".repeat(4)).is_ok());
        // 32 hex characters of real randomness: 128 bits.
        assert!(check_token("9f86d081884c7d659a2feaa0c55ad015").is_ok());
        assert!(check_token("replace-with-a-long-random-token").is_err());
        assert!(check_token("CHANGEME-0123456789abcdefghijklmnop").is_err());
        let short = check_token("abcdef0123456789").unwrap_err();
        assert!(
            short.contains("64 bits") && short.contains(MAKE_TOKEN),
            "{short}"
        );
        assert!(
            check_token(&"ab".repeat(40)).is_err(),
            "two distinct characters"
        );
        assert!((token_bits("ff") - 8.0).abs() < 1e-9);
    }
}
