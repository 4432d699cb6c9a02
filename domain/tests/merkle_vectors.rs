//! The transparency-dev `merkle` project's inclusion and consistency
//! probes (tests/vectors/transparency-dev-merkle, Apache-2.0, with its
//! LICENSE): every `happy-path.json` verifies, and every probe is accepted
//! or refused as its `wantErr` says (all but one of the others are
//! refusals). And the roots of the standard eight leaves.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use custodia_domain::merkle::{
    empty_root, leaf_hash, root, verify_consistency, verify_inclusion, MemoryTree,
};
use serde::Deserialize;

fn vectors(kind: &str) -> Vec<PathBuf> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/transparency-dev-merkle/testdata")
        .join(kind);
    let mut files = Vec::new();
    let mut folders = vec![base];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn bytes(text: &Option<String>) -> Vec<u8> {
    text.as_deref()
        .map(|t| B64.decode(t).unwrap())
        .unwrap_or_default()
}

fn proof(hashes: &Option<Vec<String>>) -> Vec<Vec<u8>> {
    hashes
        .iter()
        .flatten()
        .map(|h| B64.decode(h).unwrap())
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Inclusion {
    leaf_idx: u64,
    tree_size: u64,
    root: Option<String>,
    leaf_hash: Option<String>,
    proof: Option<Vec<String>>,
    want_err: bool,
}

#[derive(Deserialize)]
struct Consistency {
    size1: u64,
    size2: u64,
    root1: Option<String>,
    root2: Option<String>,
    proof: Option<Vec<String>>,
    #[serde(rename = "wantErr")]
    want_err: bool,
}

#[test]
fn every_inclusion_probe_is_judged_as_the_reference_judges_it() {
    let files = vectors("inclusion");
    assert!(files.len() > 50, "the vectors are where they should be");
    let mut happy = 0;
    for file in files {
        let case: Inclusion = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let verdict = verify_inclusion(
            case.leaf_idx,
            case.tree_size,
            &bytes(&case.leaf_hash),
            &proof(&case.proof),
            &bytes(&case.root),
        );
        assert_eq!(
            verdict.is_err(),
            case.want_err,
            "{}: {verdict:?}",
            file.display()
        );
        if file.file_name().is_some_and(|n| n == "happy-path.json") {
            assert!(!case.want_err, "{}", file.display());
            happy += 1;
        }
    }
    assert!(happy >= 5);
}

#[test]
fn every_consistency_probe_is_judged_as_the_reference_judges_it() {
    let files = vectors("consistency");
    assert!(files.len() > 50, "the vectors are where they should be");
    for file in files {
        let case: Consistency = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let verdict = verify_consistency(
            case.size1,
            case.size2,
            &bytes(&case.root1),
            &bytes(&case.root2),
            &proof(&case.proof),
        );
        assert_eq!(
            verdict.is_err(),
            case.want_err,
            "{}: {verdict:?}",
            file.display()
        );
    }
}

#[test]
fn the_roots_of_the_eight_standard_leaves() {
    let leaves = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    let roots = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    assert_eq!(hex::encode(empty_root()), roots[0]);
    let mut tree = MemoryTree::default();
    for (n, leaf) in leaves.iter().enumerate() {
        tree.push(leaf_hash(&hex::decode(leaf).unwrap()));
        assert_eq!(
            hex::encode(root(&tree, n as u64 + 1)),
            roots[n + 1],
            "n = {}",
            n + 1
        );
    }
    assert_eq!(hex::encode(root(&tree, 0)), roots[0]);
}
