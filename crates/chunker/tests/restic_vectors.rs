//! Every vector of /work/shared/spec/restic-chunker-vector.md (checked against restic
//! 0.14.0): offsets, lengths, chunk SHA-256s and window fingerprints.

mod common;

use std::sync::OnceLock;

use common::{hex, sha256_hex, sha_counter};
use restash_chunker::{Pol, RabinParams, StreamChunker, DEFAULT_MAX_SIZE, DEFAULT_MIN_SIZE};

/// (offset, length, fingerprint of the last 64 bytes, SHA-256)
type Row = (usize, usize, u64, &'static str);

const VECTOR1: &[Row] = &[
    (
        0,
        914995,
        0x18e6de3e800000,
        "459a4636762aaf772b80b74ca6e56e7bcd8526648ba4963e3f50e2bce7e93911",
    ),
    (
        914995,
        1689563,
        0x1c9a8bf2f00000,
        "36eb042dc77a54052aab2b5e25663eb0ea20e4decfa6bfd1b8fd8ddb47c20adc",
    ),
    (
        2604558,
        2880302,
        0x07ce6368800000,
        "8d435fd1123648fd8ae4a4435a6c6f605e544f14d82a9969be595d1f120db2f5",
    ),
    (
        5484860,
        1239462,
        0x1d149b58600000,
        "a9932599cdb556bc5ebcdd002e980d64d0cc4d9c469f4d0b39076cffe169b0e8",
    ),
    (
        6724322,
        752401,
        0x1361f2a4f00000,
        "746a2417d4eb12cbd06adeb1ccc232bdc9bd9eb28a2ba1880376af3e64534bff",
    ),
    (
        7476723,
        2642746,
        0x16f2bb66000000,
        "9e154f88d1222ec04c51f26d895d883ba9324eda98e7071447b5f9547dcf0148",
    ),
    (
        10119469,
        959386,
        0x08d96366400000,
        "c979af4850a5ec5ad622a2122491ca41070696107dc62b170741921e373065b4",
    ),
    (
        11078855,
        2777346,
        0x033d5f7d700000,
        "0fc3cc7eae2b2c499c4ec2b1dc3b7dc8845bf77424fcd5bcc1796d17ec0575d0",
    ),
    (
        13856201,
        1944434,
        0x0e3f5766100000,
        "0b10e99c42a3913af36f827f182bf2a5c6a91eb5c3c6a65129d7fd79fd071672",
    ),
    (
        15800635,
        1576612,
        0x16e42ff7000000,
        "8f7296b4cfe69737a40d4a0e6b782e741822a77e96564a05b3687ba2711d7380",
    ),
    (
        17377247,
        967803,
        0x1e8c8829f00000,
        "9b057b127cd988ef8add4990be4956dd2fd4c91c0becd9db5807aa1c94ec382a",
    ),
    (
        18345050,
        1654950,
        0x1205bccf866556,
        "d2aa23d270c6332b3c00a0535ffe4272e10ef8c59bb15bc1a905fd8f1de8740e",
    ),
];

const VECTOR2: &[Row] = &[
    (
        0,
        879724,
        0x0305cfd3000000,
        "b3a5689b4c92ef92f97c9323eed4a32a061d25c9c3ca0b1e3743e8f919365b6e",
    ),
    (
        879724,
        4261946,
        0x091bcccf800000,
        "2a57e013c72def38f66477e526f68be7e1a165a4a158aebd87de156df42fb126",
    ),
    (
        5141670,
        623570,
        0x10330ee2e00000,
        "be277f611179eafa545bb05fa4038efe8ce6ce9839fae2a48d3365c676a11bf1",
    ),
    (
        5765240,
        1639631,
        0x17c96fb6100000,
        "4823e47e167e9f0ff96c8d596131fef7dfeb8a901e069d14c9b08742b2929485",
    ),
    (
        7404871,
        1555893,
        0x01228f2ce00000,
        "3a6e85bcb9145e44286caee6c10eeccd7bec7c6593cadd0f588750434a4fa018",
    ),
    (
        8960764,
        761252,
        0x15deaf35500000,
        "956dd115936bdbb4979f6b4d0ea4efbfeb3de19d3929f224f20a7e4833e705b0",
    ),
    (
        9722016,
        914154,
        0x07b77f65c00000,
        "f6b6db22764c7ac6415c46b45559d122c212f87e47dccfeaed3a796db3b2614f",
    ),
    (
        10636170,
        596989,
        0x0fcbbb8b900000,
        "5035fdb25c079c835bfc31d1a0bd3b1479815ab6cd23be79ed212f58c949ea66",
    ),
    (
        11233159,
        4240907,
        0x1d181ac1b00000,
        "2ac5bbaa6ae448cfcd70568486a7f146cc1e1e88e6139756417e21eb919647b4",
    ),
    (
        15474066,
        1234878,
        0x13ef7c4dd00000,
        "17ad1e21f3712c747a79103f0c21f2f50d9ae0962179c0ee0b8f410f257406b4",
    ),
    (
        16708944,
        842765,
        0x10caa199200000,
        "4942cbbde5ef4acd19f419ad52355180148c50f9771087da12c9b05acc5e6e5e",
    ),
    (
        17551709,
        1692298,
        0x18a8b1b8300000,
        "3322b16dead49bc4e15a25c3b13bcce3c78024682e04df515c3015f9cd5fc647",
    ),
    (
        19244007,
        755993,
        0x07a4ce5756fe59,
        "c20506119bff50f07b8e368551f7f2bdae4771f843ae5dcf845d6ada31c180d3",
    ),
];

const VECTOR3: &[Row] = &[
    (
        0,
        8388608,
        0x182bcd15979498,
        "bb929bbdce85fdbc903a463e96630a25f8b6ef5b76090e24cd92ea8fb47b2f65",
    ),
    (
        8388608,
        8388608,
        0x182bcd15979498,
        "bb929bbdce85fdbc903a463e96630a25f8b6ef5b76090e24cd92ea8fb47b2f65",
    ),
    (
        16777216,
        3222784,
        0x182bcd15979498,
        "6444258f311eb26c968853b7b19463f862db47ed91d61c29358afeafe7ca9d73",
    ),
];

const ZERO_CHUNK: &str = "07854d2fef297a06ba81685e660c332de36d5d18d546927d30daad6d7fda1541";
const VECTOR4: &[Row] = &[
    (0, 524288, 0, ZERO_CHUNK),
    (524288, 524288, 0, ZERO_CHUNK),
    (1048576, 524288, 0, ZERO_CHUNK),
    (1572864, 524288, 0, ZERO_CHUNK),
    (2097152, 524288, 0, ZERO_CHUNK),
    (
        2621440,
        378560,
        0,
        "5a48b2c1f2372be648f538c14f9cbe5f99870d25d09222c160cd1feef1704e99",
    ),
];

const P1: Pol = Pol::new(0x3da3358b4dc173);
const P2: Pol = Pol::new(0x3b5d32b5a427db);

fn sha_input() -> &'static [u8] {
    static INPUT: OnceLock<Vec<u8>> = OnceLock::new();
    INPUT.get_or_init(|| sha_counter(20_000_000))
}

fn check(pol: Pol, data: &[u8], expected: &[Row]) {
    let params = RabinParams::new(pol).unwrap();
    let ranges: Vec<_> = params.chunks(data).collect();
    assert_eq!(ranges.len(), expected.len(), "chunk count");
    for (k, (r, &(off, len, fp, id))) in ranges.iter().zip(expected).enumerate() {
        assert_eq!((r.start, r.len()), (off, len), "chunk {k} bounds");
        let chunk = &data[r.clone()];
        assert_eq!(params.fingerprint(chunk), fp, "chunk {k} fingerprint");
        if k + 1 < expected.len() && len < DEFAULT_MAX_SIZE {
            assert_eq!(fp & 0xfffff, 0, "content-defined cut {k}");
        }
        assert_eq!(sha256_hex(chunk), id, "chunk {k} id");
    }
    assert_eq!(ranges.last().map_or(0, |r| r.end), data.len());

    // The streaming path must reproduce the same chunks.
    let mut stream = StreamChunker::new(data, params.chunker());
    let mut k = 0;
    while let Some(chunk) = stream.next_chunk().unwrap() {
        assert_eq!(chunk.len(), expected[k].1, "streamed chunk {k}");
        k += 1;
    }
    assert_eq!(k, expected.len());
}

#[test]
fn sha_counter_input_check_values() {
    let data = sha_input();
    assert_eq!(data.len(), 20_000_000);
    assert_eq!(
        hex(&data[..64]),
        "da98dbf86de59eae17de4b6e62b308d2d7678b1b676bf534b15fcd23d87bfb84\
         ae89a9cab22bbf4944ef6d0b9a7fd05147fd45723311b6058f1ff27c110f67f3"
    );
    assert_eq!(
        hex(&data[19_999_968..]),
        "fe4653355445e12f7422508ddce64e3338940f70af65353dd838324ea54f67b6"
    );
    assert_eq!(
        sha256_hex(data),
        "d8eebbdba08e72e86437bdd92f472e0bc1ff9f8a174cca2dc6ba30f7a31b60ff"
    );
}

#[test]
fn vector1_sha_counter_pol_3da3358b4dc173() {
    check(P1, sha_input(), VECTOR1);
}

#[test]
fn vector2_sha_counter_pol_3b5d32b5a427db() {
    check(P2, sha_input(), VECTOR2);
}

#[test]
fn vector3_constant_01_is_cut_at_max() {
    let data = vec![1u8; 20_000_000];
    assert_eq!(
        sha256_hex(&data),
        "6b4b0117e8a1a0858447215c11027570e1437b978be46c81cc47b38e2da86026"
    );
    check(P1, &data, VECTOR3);
    assert_eq!(VECTOR3[0].1, DEFAULT_MAX_SIZE);
}

#[test]
fn vector4_zeros_are_cut_at_min_with_any_polynomial() {
    let data = vec![0u8; 3_000_000];
    assert_eq!(
        sha256_hex(&data),
        "35bce4eae54ec8e6cc2868baa8d157914d6ae2858811b4cc0c078c94460fa26f"
    );
    assert_eq!(VECTOR4[0].1, DEFAULT_MIN_SIZE);
    for pol in [P1, P2, Pol::new(0x2482734cacca49)] {
        check(pol, &data, VECTOR4);
    }
}

#[test]
fn unit_level_fingerprint() {
    let params = RabinParams::new(P1).unwrap();
    let window: Vec<u8> = (0..64).collect();
    assert_eq!(params.fingerprint(&window), 0x044b76cac5cee3);
    assert_eq!(params.fingerprint(&[1u8; 64]), 0x182bcd15979498);
    assert_eq!(params.fingerprint(&[0u8; 64]), 0);
}

#[test]
fn polynomials_of_the_vector_file() {
    for p in [P1, P2, Pol::new(0x2482734cacca49)] {
        assert!(p.is_irreducible(), "{p}");
        assert!(RabinParams::new(p).is_ok());
    }
    assert!(!Pol::new(0x38f1e565e288df).is_irreducible());
    assert!(RabinParams::new(Pol::new(0x38f1e565e288df)).is_err());
}

#[test]
fn small_files() {
    let params = RabinParams::new(P1).unwrap();
    assert_eq!(params.chunks(&[]).count(), 0);
    let data = sha_input();
    for n in [1, 63, 64, 65, 524_287, 524_288] {
        let ranges: Vec<_> = params.chunks(&data[..n]).collect();
        assert_eq!(ranges, vec![0..n], "{n} bytes");
    }
}
