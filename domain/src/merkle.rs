//! Each chain as a Merkle log (RFC 9162 §2.1, the hashing of RFC 6962):
//! leaf hash = SHA-256(0x00 ‖ leaf), node hash = SHA-256(0x01 ‖ left ‖
//! right), the empty tree's hash = SHA-256(""). A chain's leaves, in chain
//! order, are its events' hashes (docs/audit-format.md): the event hash
//! covers ciphertext, never plaintext, so erasing a subject never changes
//! a leaf, a root or a proof.
//!
//! Proofs are built from the hashes of *perfect* subtrees (2^k leaves
//! starting at a multiple of 2^k), which [`Subtrees`] supplies: an
//! adapter that stores them answers in O(log n) reads per proof, however
//! long the chain. [`MemoryTree`] keeps them in memory.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// SHA-256(0x00 ‖ leaf).
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(leaf);
    hasher.finalize().into()
}

/// SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The hash of the empty tree, SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the index {index} is not in a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("a consistency proof needs 0 < first size ≤ second size (got {first} and {second})")]
    BadSizes { first: u64, second: u64 },
    #[error("the proof has {got} hashes; a proof for these sizes has {want}")]
    WrongLength { got: usize, want: usize },
    #[error("a hash of the proof is not 32 bytes")]
    NotAHash,
    #[error("the proof leads to another root")]
    RootMismatch,
}

/// The hashes of perfect subtrees of one tree: `level` k, `index` i is the
/// hash of leaves [i·2^k, (i+1)·2^k).
pub trait Subtrees {
    fn subtree(&self, level: u32, index: u64) -> Hash;
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The root of the leaves [start, start + size) (`start` a multiple of the
/// largest power of two not above `size`, as every range a proof asks is):
/// the perfect subtrees it is made of, joined right to left.
pub fn range_root(tree: &(impl Subtrees + ?Sized), start: u64, size: u64) -> Hash {
    if size == 0 {
        return empty_root();
    }
    // Perfect pieces from the left, largest first (the binary digits of size).
    let mut pieces = Vec::with_capacity(64);
    let mut at = start;
    for level in (0..64u32).rev() {
        if size & (1 << level) != 0 {
            pieces.push(tree.subtree(level, at >> level));
            at += 1 << level;
        }
    }
    let mut hash = pieces.pop().expect("size > 0 has a piece");
    while let Some(left) = pieces.pop() {
        hash = node_hash(&left, &hash);
    }
    hash
}

/// The root of a tree of `size` leaves.
pub fn root(tree: &(impl Subtrees + ?Sized), size: u64) -> Hash {
    range_root(tree, 0, size)
}

/// The inclusion proof of leaf `index` in the tree of its first `size`
/// leaves (RFC 9162 §2.1.3.1), leaf-side first.
pub fn inclusion_proof(
    tree: &(impl Subtrees + ?Sized),
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::new();
    let (mut start, mut size, mut index) = (0, size, index);
    // Walk down from the root; each step's sibling goes on the front.
    while size > 1 {
        let k = split(size);
        if index < k {
            proof.push(range_root(tree, start + k, size - k));
            size = k;
        } else {
            proof.push(range_root(tree, start, k));
            start += k;
            index -= k;
            size -= k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The consistency proof between the trees of the first `first` and
/// `second` leaves (RFC 9162 §2.1.4.1).
pub fn consistency_proof(
    tree: &(impl Subtrees + ?Sized),
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, ProofError> {
    if first == 0 || first > second {
        return Err(ProofError::BadSizes { first, second });
    }
    let mut proof = Vec::new();
    let (mut start, mut m, mut n, mut whole) = (0, first, second, true);
    while m != n {
        let k = split(n);
        if m <= k {
            proof.push(range_root(tree, start + k, n - k));
            n = k;
        } else {
            proof.push(range_root(tree, start, k));
            start += k;
            m -= k;
            n -= k;
            whole = false;
        }
    }
    if !whole {
        proof.push(range_root(tree, start, m));
    }
    proof.reverse();
    Ok(proof)
}

fn as_hash(bytes: &[u8]) -> Result<Hash, ProofError> {
    bytes.try_into().map_err(|_| ProofError::NotAHash)
}

/// Checks that `leaf` (a leaf hash) is at `index` in the tree of `size`
/// leaves whose root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &[u8],
    proof: &[impl AsRef<[u8]>],
    root: &[u8],
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let want = inclusion_length(index, size);
    if proof.len() != want {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want,
        });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut hash = as_hash(leaf).map_err(|_| ProofError::RootMismatch)?;
    for sibling in proof {
        let sibling = as_hash(sibling.as_ref())?;
        if f & 1 == 1 || f == s {
            hash = node_hash(&sibling, &hash);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            hash = node_hash(&hash, &sibling);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 || hash.as_slice() != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// How many hashes the inclusion proof of `index` in a tree of `size` has.
fn inclusion_length(index: u64, size: u64) -> usize {
    steps(index, size - 1)
}

/// How many steps the RFC 9162 verification loop takes from the node
/// numbers `f` and `s` (`fn` and `sn` there) until `s` is 0: one hash each.
fn steps(mut f: u64, mut s: u64) -> usize {
    let mut length = 0;
    while s != 0 {
        if f & 1 == 0 && f == s {
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        }
        length += 1;
        f >>= 1;
        s >>= 1;
    }
    length
}

/// Checks that the tree of `first` leaves with root `first_root` is a
/// prefix of the tree of `second` leaves with root `second_root` (RFC 9162
/// §2.1.4.2). A tree of no leaves proves nothing and is refused.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &[u8],
    second_root: &[u8],
    proof: &[impl AsRef<[u8]>],
) -> Result<(), ProofError> {
    if first == 0 || first > second {
        return Err(ProofError::BadSizes { first, second });
    }
    if first == second {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: 0,
            });
        }
        return if first_root == second_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(as_hash(first_root).map_err(|_| ProofError::RootMismatch)?);
    }
    for hash in proof {
        path.push(as_hash(hash.as_ref())?);
    }
    let want = consistency_length(first, second);
    if path.len() != want {
        let prepended = usize::from(first.is_power_of_two());
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want: want - prepended,
        });
    }
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut first_hash, mut second_hash) = (path[0], path[0]);
    for hash in &path[1..] {
        if s == 0 {
            return Err(ProofError::RootMismatch);
        }
        if f & 1 == 1 || f == s {
            first_hash = node_hash(hash, &first_hash);
            second_hash = node_hash(hash, &second_hash);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            second_hash = node_hash(&second_hash, hash);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 || first_hash.as_slice() != first_root || second_hash.as_slice() != second_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// How many hashes the verifier's path has for sizes 0 < first < second
/// (the proof, with the first root in front when first is a power of two).
fn consistency_length(first: u64, second: u64) -> usize {
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    1 + steps(f, s)
}

/// The right edge of a growing tree: the roots of its perfect subtrees,
/// largest first (one per set bit of its size). O(log n) memory; each leaf
/// costs one hash amortised; the root at any size in O(log n). What a
/// verifier keeps while it walks a chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    /// Appends a leaf (its hash).
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            let left = self.hashes.pop().expect("a set bit has its subtree");
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.hashes.push(hash);
        self.size += 1;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The frontier of a tree of `size` leaves from its perfect subtrees'
    /// hashes, largest first (one per set bit of `size`); `None` when
    /// their number does not match. What lets a verifier walk a chain
    /// from the middle: the hashes commit to every leaf before.
    pub fn resume(size: u64, hashes: Vec<Hash>) -> Option<Frontier> {
        (hashes.len() == size.count_ones() as usize).then_some(Frontier { size, hashes })
    }

    /// The perfect subtrees' hashes, largest first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// The tree's root.
    pub fn root(&self) -> Hash {
        let mut pieces = self.hashes.iter().rev();
        let Some(last) = pieces.next() else {
            return empty_root();
        };
        pieces.fold(*last, |hash, left| node_hash(left, &hash))
    }
}

/// The frontier of the tree of the first `size` leaves, from stored
/// subtrees: what [`Frontier::resume`] takes to go on from leaf `size`.
pub fn frontier(tree: &(impl Subtrees + ?Sized), size: u64) -> Vec<Hash> {
    let mut start = 0;
    (0..64u32)
        .rev()
        .filter(|level| size >> level & 1 == 1)
        .map(|level| {
            let hash = tree.subtree(level, start >> level);
            start += 1 << level;
            hash
        })
        .collect()
}

/// Every perfect subtree hash of a tree, in memory: level 0 holds the leaf
/// hashes, level k the hashes of complete pairs of level k − 1.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// Appends a leaf (its hash) and every perfect subtree it completes.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(hash);
            let count = self.levels[level].len();
            if count % 2 == 1 {
                return;
            }
            hash = node_hash(&self.levels[level][count - 2], &hash);
            level += 1;
        }
    }

    /// How many leaves the tree has.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }
}

impl Subtrees for MemoryTree {
    fn subtree(&self, level: u32, index: u64) -> Hash {
        self.levels[level as usize][index as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9162's definitions, computed naively: the oracle the stored
    /// form is checked against.
    fn naive_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
            }
        }
    }

    fn naive_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        let n = leaves.len();
        if n == 1 {
            return vec![];
        }
        let k = split(n as u64) as usize;
        if m < k {
            let mut path = naive_path(m, &leaves[..k]);
            path.push(naive_root(&leaves[k..]));
            path
        } else {
            let mut path = naive_path(m - k, &leaves[k..]);
            path.push(naive_root(&leaves[..k]));
            path
        }
    }

    fn naive_subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if whole {
                vec![]
            } else {
                vec![naive_root(leaves)]
            };
        }
        let k = split(n as u64) as usize;
        if m <= k {
            let mut proof = naive_subproof(m, &leaves[..k], whole);
            proof.push(naive_root(&leaves[k..]));
            proof
        } else {
            let mut proof = naive_subproof(m - k, &leaves[k..], false);
            proof.push(naive_root(&leaves[..k]));
            proof
        }
    }

    #[test]
    fn stored_subtrees_give_the_proofs_of_the_definitions() {
        let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut tree = MemoryTree::default();
        let mut frontier = Frontier::default();
        assert_eq!(frontier.root(), empty_root());
        for (n, leaf) in leaves.iter().enumerate() {
            tree.push(*leaf);
            let size = n as u64 + 1;
            let prefix = &leaves[..=n];
            let root_now = root(&tree, size);
            assert_eq!(root_now, naive_root(prefix), "root of {size}");
            for index in 0..size {
                let proof = inclusion_proof(&tree, index, size).unwrap();
                assert_eq!(proof, naive_path(index as usize, prefix));
                verify_inclusion(index, size, &leaves[index as usize], &proof, &root_now).unwrap();
            }
            frontier.push(*leaf);
            assert_eq!(frontier.root(), root_now);
            assert_eq!(frontier.size(), size);
            for first in 1..=size {
                let proof = consistency_proof(&tree, first, size).unwrap();
                assert_eq!(proof, naive_subproof(first as usize, prefix, true));
                let first_root = root(&tree, first);
                verify_consistency(first, size, &first_root, &root_now, &proof).unwrap();
            }
        }
        // A walk resumed from any size's frontier reaches the same root.
        let size = tree.size();
        for start in 0..=size {
            let mut resumed = Frontier::resume(start, super::frontier(&tree, start)).unwrap();
            for leaf in &leaves[start as usize..] {
                resumed.push(*leaf);
            }
            assert_eq!(resumed.root(), root(&tree, size), "resumed at {start}");
        }
        assert_eq!(Frontier::resume(6, vec![leaves[0]]), None);
        // A proof for another leaf, size or root is refused.
        let size = tree.size();
        let proof = inclusion_proof(&tree, 5, size).unwrap();
        let root_now = root(&tree, size);
        assert!(verify_inclusion(6, size, &leaves[5], &proof, &root_now).is_err());
        assert!(verify_inclusion(5, size, &leaves[6], &proof, &root_now).is_err());
        // (A root binds its size only through what signs them together:
        // with this root, size 69 and 70 give the same path here.)
        let smaller = root(&tree, size - 1);
        assert!(verify_inclusion(5, size - 1, &leaves[5], &proof, &smaller).is_err());
        assert!(verify_inclusion(5, size, &leaves[5], &proof[1..], &root_now).is_err());
        let consistency = consistency_proof(&tree, 33, size).unwrap();
        let wrong = root(&tree, 34);
        assert!(verify_consistency(33, size, &wrong, &root_now, &consistency).is_err());
    }
}
