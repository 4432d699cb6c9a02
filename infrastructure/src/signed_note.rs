//! C2SP `signed-note` with Ed25519 signatures, and the `tlog-checkpoint`
//! notes a log signs (https://c2sp.org/signed-note,
//! https://c2sp.org/tlog-checkpoint). The signatures are `ed25519-dalek`'s;
//! this module is the text format around them, as Go's reference
//! (`golang.org/x/mod/sumdb/note`) reads and writes it.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The algorithm byte of an Ed25519 key.
const ED25519: u8 = 0x01;
/// The prefix of a signature line: an em dash and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";
/// More signatures than this and a note is refused unread.
const MAX_SIGNATURES: usize = 100;

/// Why a key or a note was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed key")]
    MalformedKey,
    #[error("malformed note")]
    MalformedNote,
    #[error("the signature of {0} does not verify")]
    InvalidSignature(String),
    #[error("no signature by a known key")]
    Unverified,
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
}

/// A key name: not empty, no white space, no `+`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_whitespace) && !name.contains('+')
}

/// The key id: the first 4 bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ key).
fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ED25519]);
    hasher.update(public);
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// A key that checks signatures: `<name>+<key id, 8 hex>+<base64(0x01 ‖ key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl NoteVerifier {
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::MalformedKey);
        };
        let id = parse_id(id)?;
        let key = B64.decode(key).map_err(|_| NoteError::MalformedKey)?;
        let [ED25519, key @ ..] = key.as_slice() else {
            return Err(NoteError::MalformedKey);
        };
        let public: [u8; 32] = key.try_into().map_err(|_| NoteError::MalformedKey)?;
        if !valid_name(name) || key_id(name, &public) != id {
            return Err(NoteError::MalformedKey);
        }
        let key = VerifyingKey::from_bytes(&public).map_err(|_| NoteError::MalformedKey)?;
        Ok(Self {
            name: name.to_owned(),
            id,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = [&[ED25519][..], self.key.as_bytes()].concat();
        write!(f, "{}+{:08x}+{}", self.name, self.id, B64.encode(key))
    }
}

fn parse_id(text: &str) -> Result<u32, NoteError> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::MalformedKey);
    }
    u32::from_str_radix(text, 16).map_err(|_| NoteError::MalformedKey)
}

/// A key that signs: `PRIVATE+KEY+<name>+<key id>+<base64(0x01 ‖ seed)>`.
/// Its `Debug` form never shows the key.
pub struct NoteSigner {
    name: String,
    id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoteSigner({}+{:08x})", self.name, self.id)
    }
}

impl NoteSigner {
    /// A new key named `name`.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::MalformedKey);
        }
        let key = SigningKey::generate(&mut aes_gcm::aead::OsRng);
        Ok(Self::with_key(name, key))
    }

    /// The signer named `name` with the Ed25519 seed `seed`.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::MalformedKey);
        }
        Ok(Self::with_key(name, SigningKey::from_bytes(seed)))
    }

    /// The Ed25519 seed (a secret).
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    fn with_key(name: &str, key: SigningKey) -> Self {
        Self {
            name: name.to_owned(),
            id: key_id(name, key.verifying_key().as_bytes()),
            key,
        }
    }

    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let rest = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::MalformedKey)?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::MalformedKey);
        };
        let id = parse_id(id)?;
        let key = Zeroizing::new(B64.decode(key).map_err(|_| NoteError::MalformedKey)?);
        let [ED25519, seed @ ..] = key.as_slice() else {
            return Err(NoteError::MalformedKey);
        };
        let seed: &[u8; 32] = seed.try_into().map_err(|_| NoteError::MalformedKey)?;
        if !valid_name(name) {
            return Err(NoteError::MalformedKey);
        }
        let signer = Self::with_key(name, SigningKey::from_bytes(seed));
        if signer.id != id {
            return Err(NoteError::MalformedKey);
        }
        Ok(signer)
    }

    /// The signer key in its text form (a secret).
    pub fn to_secret_string(&self) -> Zeroizing<String> {
        let key = Zeroizing::new([&[ED25519][..], self.key.as_bytes()].concat());
        Zeroizing::new(format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            B64.encode(&*key)
        ))
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// The signed note of `text` (which must end with a newline and hold no
    /// control character but newlines).
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        if !text.ends_with('\n') || !valid_text(text) {
            return Err(NoteError::MalformedNote);
        }
        let signature = self.key.sign(text.as_bytes());
        let mut blob = self.id.to_be_bytes().to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{text}\n{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            B64.encode(blob)
        ))
    }
}

/// UTF-8 (given) with no ASCII control character but newline.
fn valid_text(text: &str) -> bool {
    !text.chars().any(|c| c < ' ' && c != '\n')
}

/// A note whose signatures were checked: its text, and the names of the
/// known keys that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedNote {
    pub text: String,
    pub signed_by: Vec<String>,
}

/// Opens a signed note: the text and every signature line are parsed as
/// the format says; each signature by a key of `known` must verify (one
/// that does not is an error, not a skip); signatures by other keys are
/// ignored; at least one known key must have signed.
pub fn open(note: &str, known: &[NoteVerifier]) -> Result<OpenedNote, NoteError> {
    if !valid_text(note) {
        return Err(NoteError::MalformedNote);
    }
    let split = note.rfind("\n\n").ok_or(NoteError::MalformedNote)?;
    let (text, signatures) = (&note[..=split], &note[split + 2..]);
    if !signatures.ends_with('\n') {
        return Err(NoteError::MalformedNote);
    }
    let mut signed_by: Vec<String> = Vec::new();
    for (n, line) in signatures.trim_end_matches('\n').split('\n').enumerate() {
        if n >= MAX_SIGNATURES {
            return Err(NoteError::MalformedNote);
        }
        let line = line
            .strip_prefix(SIGNATURE_PREFIX)
            .ok_or(NoteError::MalformedNote)?;
        let (name, signature) = line.split_once(' ').ok_or(NoteError::MalformedNote)?;
        let blob = B64
            .decode(signature)
            .map_err(|_| NoteError::MalformedNote)?;
        if !valid_name(name) || signature.is_empty() || blob.len() < 5 {
            return Err(NoteError::MalformedNote);
        }
        let id = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
        let Some(verifier) = known.iter().find(|v| v.name == name && v.id == id) else {
            continue;
        };
        if signed_by.iter().any(|signer| signer == name) {
            continue;
        }
        let signature = ed25519_dalek::Signature::from_slice(&blob[4..])
            .map_err(|_| NoteError::InvalidSignature(name.to_owned()))?;
        verifier
            .key
            .verify(text.as_bytes(), &signature)
            .map_err(|_| NoteError::InvalidSignature(name.to_owned()))?;
        signed_by.push(name.to_owned());
    }
    if signed_by.is_empty() {
        return Err(NoteError::Unverified);
    }
    Ok(OpenedNote {
        text: text.to_owned(),
        signed_by,
    })
}

/// A `tlog-checkpoint`: the log's origin, its size, its root hash, and any
/// extension lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: [u8; 32],
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text.
    pub fn text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(NoteError::MalformedCheckpoint("no final newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(NoteError::MalformedCheckpoint("no origin"))?;
        let size = lines
            .next()
            .filter(|s| {
                !s.is_empty()
                    && s.bytes().all(|b| b.is_ascii_digit())
                    && (s.len() == 1 || !s.starts_with('0'))
            })
            .and_then(|s| s.parse().ok())
            .ok_or(NoteError::MalformedCheckpoint(
                "the size is not a decimal number",
            ))?;
        let root = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| <[u8; 32]>::try_from(r).ok())
            .ok_or(NoteError::MalformedCheckpoint(
                "the root is not 32 bytes of base64",
            ))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(NoteError::MalformedCheckpoint("an empty extension line"));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

#[cfg(test)]
mod tests {
    //! Known answers from ../shared/vectors/README.md: the signed-note
    //! specification's example, and Go's reference signer and its
    //! signature, byte for byte.
    use super::*;

    const SPEC_KEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
    const GO_SIGNER: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VERIFIER: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const GO_SIGNATURE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const ENOCH_SIGNATURE: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    #[test]
    fn the_specification_example_opens() {
        let key = NoteVerifier::parse(SPEC_KEY).unwrap();
        assert_eq!(key.to_string(), SPEC_KEY);
        let opened = open(SPEC_NOTE, &[key]).unwrap();
        assert_eq!(opened.text, "This is an example message.\n");
        assert_eq!(opened.signed_by, vec!["example.com/foo"]);
    }

    #[test]
    fn the_reference_signer_signs_byte_for_byte() {
        let signer = NoteSigner::parse(GO_SIGNER).unwrap();
        assert_eq!(signer.verifier().to_string(), GO_VERIFIER);
        assert_eq!(*signer.to_secret_string(), GO_SIGNER);
        let note = signer.sign(GO_TEXT).unwrap();
        assert_eq!(note, format!("{GO_TEXT}\n{GO_SIGNATURE}"));
        let peter = NoteVerifier::parse(GO_VERIFIER).unwrap();
        let enoch = NoteVerifier::parse(ENOCH).unwrap();
        assert_eq!(
            open(&note, std::slice::from_ref(&peter)).unwrap().text,
            GO_TEXT
        );
        // Signed twice: each known key is checked; an unknown one is ignored.
        let twice = format!("{note}{ENOCH_SIGNATURE}");
        let both = open(&twice, &[peter.clone(), enoch.clone()]).unwrap();
        assert_eq!(both.signed_by, vec!["PeterNeumann", "EnochRoot"]);
        assert_eq!(
            open(&twice, std::slice::from_ref(&enoch))
                .unwrap()
                .signed_by,
            vec!["EnochRoot"]
        );
        // Only an unknown key signed: not verified.
        assert_eq!(open(&note, &[enoch]), Err(NoteError::Unverified));
        // A changed text fails its signature.
        let changed = note.replacen("answer", "Answer", 1);
        assert_eq!(
            open(&changed, &[peter]),
            Err(NoteError::InvalidSignature("PeterNeumann".into()))
        );
    }

    #[test]
    fn malformed_notes_are_refused() {
        let peter = NoteVerifier::parse(GO_VERIFIER).unwrap();
        let signed = format!("{GO_TEXT}\n{GO_SIGNATURE}");
        let many = format!("{GO_TEXT}\n{}", GO_SIGNATURE.repeat(101));
        let refused = [
            // no blank line before the signatures
            format!("{GO_TEXT}{GO_SIGNATURE}"),
            // no trailing newline
            signed.trim_end_matches('\n').to_owned(),
            // a control character in the text
            signed.replacen("problem", "pro\u{7}blem", 1),
            // a key name with a space
            signed.replacen("PeterNeumann x08", "Peter Neumann x08", 1),
            // a trailing line that is not a signature
            format!("{signed}not a signature\n"),
            // more than 100 signatures
            many,
        ];
        for note in refused {
            assert_eq!(
                open(&note, std::slice::from_ref(&peter)),
                Err(NoteError::MalformedNote),
                "{note:?}"
            );
        }
        assert_eq!(
            NoteSigner::parse(GO_SIGNER).unwrap().sign("no newline"),
            Err(NoteError::MalformedNote)
        );
        assert!(NoteVerifier::parse(
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        )
        .is_err());
    }

    #[test]
    fn checkpoints_read_back_and_refuse_malformed_text() {
        let checkpoint = Checkpoint {
            origin: "custodia.example/tenant/0192".into(),
            size: 70,
            root: [7; 32],
            extensions: vec!["time 2026-11-30T00:00:00Z".into()],
        };
        let text = checkpoint.text();
        assert_eq!(Checkpoint::parse(&text).unwrap(), checkpoint);
        let signer = NoteSigner::generate("custodia.example/tenant/0192").unwrap();
        let note = signer.sign(&text).unwrap();
        let opened = open(&note, &[signer.verifier()]).unwrap();
        assert_eq!(Checkpoint::parse(&opened.text).unwrap(), checkpoint);
        for bad in [
            "origin\n070\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
            "origin\n-1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
            "origin\n7\nBwcH\n",
            "\n7\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
            "origin\n7\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
        ] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
    }
}
