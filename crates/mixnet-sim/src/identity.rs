//! Stable client identities: a 32-byte secret from which a client's address is derived,
//! so a server keeps its address across restarts.

use std::fmt;
use std::io::{self, Write};
use std::path::Path;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::types::Address;

/// A client's secret identity. Its [`address`](Identity::address) is derived from it
/// one way: knowing the address tells nothing about the secret, and the same secret
/// always gives the same address.
///
/// ```
/// use mixnet_sim::Identity;
///
/// let id = Identity::from_bytes([7; 32]);
/// assert_eq!(id.address(), Identity::from_bytes([7; 32]).address());
/// assert_ne!(id.address(), Identity::from_bytes([8; 32]).address());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Identity([u8; 32]);

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        write!(f, "Identity(address {})", self.address())
    }
}

impl Identity {
    /// The identity made of these secret bytes.
    pub fn from_bytes(secret: [u8; 32]) -> Self {
        Identity(secret)
    }

    /// A fresh identity from the operating system's randomness.
    pub fn generate() -> Self {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        Identity(secret)
    }

    /// The secret bytes (write them only where [`Identity::save`] would).
    pub fn secret(&self) -> &[u8; 32] {
        &self.0
    }

    /// The address this identity has on a simulated mixnet: the first 32 bytes of the
    /// ChaCha20 key stream keyed by the secret (a one-way derivation).
    pub fn address(&self) -> Address {
        let mut rng = ChaCha20Rng::from_seed(self.0);
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        Address::from_bytes(b)
    }

    /// Loads the identity in `path`, creating the file with a fresh identity if it does
    /// not exist (readable and writable by its owner only, mode 0600 on Unix). Returns
    /// the identity and whether the file was created. The file holds the secret as 64
    /// hex digits and a newline.
    pub fn load_or_create(path: &Path) -> io::Result<(Identity, bool)> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((Self::parse_file(path, &text)?, false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let id = Identity::generate();
                match id.save(path) {
                    Ok(()) => Ok((id, true)),
                    // Another process created it meanwhile: use theirs.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        let text = std::fs::read_to_string(path)?;
                        Ok((Self::parse_file(path, &text)?, false))
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("could not read the identity file {}: {e}", path.display()),
            )),
        }
    }

    /// Writes the identity to a new file at `path` (mode 0600 on Unix); fails with
    /// `AlreadyExists` rather than replace an existing identity.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("could not create the identity file {}: {e}", path.display()),
            )
        })?;
        let mut text = String::with_capacity(65);
        for b in self.0 {
            text.push_str(&format!("{b:02x}"));
        }
        text.push('\n');
        f.write_all(text.as_bytes())?;
        f.sync_all()
    }

    fn parse_file(path: &Path, text: &str) -> io::Result<Identity> {
        let bad = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the identity file {} is not valid ({why}); it must hold 64 hex digits. \
                     Move it away to create a new identity (the address will change)",
                    path.display()
                ),
            )
        };
        let hex = text.trim();
        if hex.len() != 64 {
            return Err(bad(&format!("{} characters", hex.len())));
        }
        let mut secret = [0u8; 32];
        for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
            let s = std::str::from_utf8(chunk).map_err(|_| bad("not text"))?;
            secret[i] = u8::from_str_radix(s, 16).map_err(|_| bad("not hex"))?;
        }
        Ok(Identity(secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("mixnet-sim-identity-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        dir
    }

    #[test]
    fn a_key_file_gives_the_same_address_every_time() {
        let path = temp_path("same");
        let (first, created) = Identity::load_or_create(&path).unwrap();
        assert!(created);
        let (again, created) = Identity::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(first.address(), again.address());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(first.save(&path).is_err(), "never overwrites an identity");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_damaged_key_file_is_an_error_that_says_what_to_do() {
        let path = temp_path("bad");
        std::fs::write(&path, "zz\n").unwrap();
        let err = Identity::load_or_create(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("64 hex digits"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let id = Identity::from_bytes([0xab; 32]);
        assert!(!format!("{id:?}").contains("abababab"));
    }
}
