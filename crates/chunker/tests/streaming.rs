//! Incremental feeding, the reader adapter and FastCDC against the `fastcdc` crate.

mod common;

use std::io::{self, Read};
use std::ops::Range;

use common::{pseudo_random, sha_counter};
use fastcdc::v2020::{FastCDC, Normalization};
use restash_chunker::{
    BoundaryFinder, Chunker, ChunkerParams, FastCdcParams, Pol, RabinParams, StreamChunker,
};

const P1: Pol = Pol::new(0x3da3358b4dc173);

/// Chunk lengths from feeding `data` in buffers of the given sizes, cycled.
fn feed<C: BoundaryFinder>(mut finder: C, data: &[u8], sizes: &[usize]) -> Vec<usize> {
    let (mut lengths, mut current, mut pos) = (Vec::new(), 0, 0);
    for &size in sizes.iter().cycle() {
        if pos >= data.len() {
            break;
        }
        let mut buf = &data[pos..(pos + size).min(data.len())];
        pos += buf.len();
        while let Some(n) = finder.next_boundary(buf) {
            lengths.push(current + n);
            current = 0;
            buf = &buf[n..];
        }
        current += buf.len();
    }
    if current > 0 {
        lengths.push(current);
    }
    lengths
}

fn lengths(ranges: impl Iterator<Item = Range<usize>>) -> Vec<usize> {
    ranges.map(|r| r.len()).collect()
}

/// A reader that returns reads of cycling, odd sizes.
struct OddReader<'a> {
    data: &'a [u8],
    sizes: &'a [usize],
    calls: usize,
}

impl Read for OddReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.calls % 5 == 0 {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = self.sizes[self.calls % self.sizes.len()]
            .min(buf.len())
            .min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Streams `data` through the reader adapter, checking that the chunks tile it.
fn stream_lengths<C: BoundaryFinder>(finder: C, data: &[u8], read_size: usize) -> Vec<usize> {
    let reader = OddReader {
        data,
        sizes: &[1, 4097, 1 << 20, 13, 65_536, 333_333],
        calls: 0,
    };
    let mut stream = StreamChunker::with_read_size(reader, finder, read_size);
    let (mut out, mut pos) = (Vec::new(), 0);
    while let Some(chunk) = stream.next_chunk().unwrap() {
        assert_eq!(chunk, &data[pos..pos + chunk.len()]);
        pos += chunk.len();
        out.push(chunk.len());
    }
    assert_eq!(pos, data.len());
    assert!(stream.next_chunk().unwrap().is_none());
    out
}

#[test]
fn rabin_feeding_in_odd_buffers_matches_slice() {
    let data = sha_counter(20_000_000);
    let params = RabinParams::new(P1).unwrap();
    let expected = lengths(params.chunks(&data));
    assert_eq!(expected.len(), 12);
    for sizes in [&[4097][..], &[1 << 20], &[7, 100_003, 1 << 20, 64, 63, 65]] {
        assert_eq!(feed(params.chunker(), &data, sizes), expected, "{sizes:?}");
    }
    assert_eq!(stream_lengths(params.chunker(), &data, 1 << 18), expected);
    assert_eq!(stream_lengths(params.chunker(), &data, 4097), expected);
}

#[test]
fn rabin_feeding_byte_by_byte_matches_slice() {
    let data = sha_counter(3_000_000);
    for params in [
        RabinParams::new(P1).unwrap(),
        // A 64-byte minimum starts hashing at once, so windows straddle buffers often.
        RabinParams::new(P1)
            .unwrap()
            .with_sizes(64, 1 << 22)
            .unwrap(),
        RabinParams::new(Pol::new(0x3b5d32b5a427db))
            .unwrap()
            .with_sizes(100, 300_000)
            .unwrap(),
    ] {
        let expected = lengths(params.chunks(&data));
        assert!(expected.len() >= 3, "{expected:?}");
        assert_eq!(feed(params.chunker(), &data, &[1]), expected);
        assert_eq!(
            feed(params.chunker(), &data, &[1, 2, 3, 61, 64, 65, 127]),
            expected
        );
    }
}

#[test]
fn rabin_random_data_cross_check_from_vector_file() {
    // Not the file restic saw, but its lengths must still respect the limits and the
    // streaming path must agree.
    let data = pseudo_random(3_000_000, 42);
    let params = RabinParams::new(Pol::new(0x2af61f9bf97f73)).unwrap();
    let expected = lengths(params.chunks(&data));
    assert_eq!(expected.iter().sum::<usize>(), data.len());
    for (k, &len) in expected.iter().enumerate() {
        assert!(len <= params.max_size());
        assert!(len >= params.min_size() || k + 1 == expected.len());
    }
    assert_eq!(stream_lengths(params.chunker(), &data, 1000), expected);
}

/// Cut points of the `fastcdc` crate itself.
fn crate_lengths(data: &[u8], (min, avg, max): (u32, u32, u32), level: u8) -> Vec<usize> {
    let level = [
        Normalization::Level0,
        Normalization::Level1,
        Normalization::Level2,
        Normalization::Level3,
    ][usize::from(level)];
    FastCDC::with_level(data, min, avg, max, level)
        .map(|c| c.length)
        .collect()
}

/// Ours equals fastcdc's, or differs only by the documented end-of-file case: the
/// final chunk split off its last byte.
fn assert_fastcdc_equal(ours: &[usize], theirs: &[usize], what: &str) {
    if ours == theirs {
        return;
    }
    let (last, rest) = theirs.split_last().expect("non-empty");
    assert_eq!(ours.len(), theirs.len() + 1, "{what}");
    assert_eq!(&ours[..rest.len()], rest, "{what}");
    assert_eq!(ours[rest.len()..], [last - 1, 1], "{what}");
}

#[test]
fn fastcdc_matches_the_crate_exactly() {
    let random = pseudo_random(1 << 20, 7);
    let mut texty = Vec::new();
    for i in 0..40_000u32 {
        texty.extend_from_slice(
            format!("line {} of some log file, value={}\n", i, i % 97).as_bytes(),
        );
    }
    let zeros = vec![0u8; 200_000];
    let configs = [
        (64, 256, 1024),
        (65, 300, 1031),
        (1000, 2000, 3001),
        (1001, 1001, 1025),
        (4096, 16384, 65536),
        (8192, 4096, 65536),
    ];
    for data in [&random[..], &texty[..], &zeros[..]] {
        for cfg in configs {
            for level in 0..=3 {
                let Ok(params) = FastCdcParams::with_normalization(cfg.0, cfg.1, cfg.2, level)
                else {
                    assert!(cfg.0 > cfg.1, "{cfg:?} rejected");
                    continue;
                };
                let ours = lengths(params.chunks(data));
                let what = format!("{cfg:?} level {level}");
                assert_fastcdc_equal(&ours, &crate_lengths(data, cfg, level), &what);
                for sizes in [&[1][..], &[2], &[3, 1, 4, 1, 5, 9, 2, 6], &[4097]] {
                    assert_eq!(
                        feed(params.chunker(), data, sizes),
                        ours,
                        "{what} {sizes:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn fastcdc_end_of_file_pair_case() {
    let params = FastCdcParams::new(64, 256, 1024).unwrap();
    let data = pseudo_random(1 << 20, 11);
    // A cut at an even offset means the hash hit on the first byte of a pair. End
    // the input right after that byte.
    let cut = params
        .chunks(&data)
        .map(|r| r.end)
        .find(|&end| end % 2 == 0 && end < data.len())
        .unwrap();
    let data = &data[..cut + 1];
    let theirs = crate_lengths(data, (64, 256, 1024), 1);
    let ours = lengths(params.chunks(data));
    assert_ne!(ours, theirs);
    assert_fastcdc_equal(&ours, &theirs, "end of file");
    assert_eq!(*ours.last().unwrap(), 1);
    assert_eq!(stream_lengths(params.chunker(), data, 7), ours);
}

#[test]
fn fastcdc_defaults_round_trip() {
    let data = sha_counter(20_000_000);
    let params = FastCdcParams::default();
    assert_eq!(
        (params.min_size(), params.avg_size(), params.max_size()),
        (512 << 10, 1 << 20, 8 << 20)
    );
    let ranges: Vec<_> = params.chunks(&data).collect();
    let expected = crate_lengths(&data, (512 << 10, 1 << 20, 8 << 20), 1);
    assert_fastcdc_equal(&lengths(ranges.iter().cloned()), &expected, "defaults");
    let mut next = 0;
    for (k, r) in ranges.iter().enumerate() {
        assert_eq!(r.start, next);
        next = r.end;
        assert!(r.len() <= params.max_size());
        assert!(r.len() >= params.min_size() || k + 1 == ranges.len());
    }
    assert_eq!(next, data.len());
    let ours = lengths(ranges.iter().cloned());
    assert_eq!(stream_lengths(params.chunker(), &data, 1 << 18), ours);
    assert_eq!(feed(params.chunker(), &data, &[4097, 1 << 20, 1]), ours);

    let concatenated: Vec<u8> = params
        .chunker()
        .pipe_stream(&data[..])
        .flat_map(|c| c.unwrap())
        .collect();
    assert_eq!(concatenated, data);
}

trait PipeStream: BoundaryFinder + Sized {
    fn pipe_stream<R: Read>(self, r: R) -> StreamChunker<R, Self> {
        StreamChunker::new(r, self)
    }
}
impl<C: BoundaryFinder> PipeStream for C {}

#[test]
fn fastcdc_rejects_bad_sizes() {
    assert!(FastCdcParams::new(32, 1024, 4096).is_err());
    assert!(FastCdcParams::new(2048, 1024, 4096).is_err());
    assert!(FastCdcParams::new(1024, 8192, 4096).is_err());
    assert!(FastCdcParams::new(1024, 2048, 32 << 20).is_err());
    assert!(FastCdcParams::with_normalization(1024, 2048, 4096, 4).is_err());
}

#[test]
fn chunker_enum_dispatches() {
    let data = pseudo_random(4_000_000, 3);
    let rabin = RabinParams::new(P1).unwrap();
    let fast = FastCdcParams::default();
    for params in [
        ChunkerParams::from(rabin.clone()),
        ChunkerParams::from(fast.clone()),
    ] {
        let direct = match &params {
            ChunkerParams::Rabin(p) => lengths(p.chunks(&data)),
            ChunkerParams::FastCdc(p) => lengths(p.chunks(&data)),
        };
        assert_eq!(lengths(params.chunks(&data)), direct);
        let streamed: Vec<usize> = params.stream(&data[..]).map(|c| c.unwrap().len()).collect();
        assert_eq!(streamed, direct);
        assert_eq!(params.chunker().max_size(), params.max_size());
        assert!(matches!(
            (&params, params.chunker()),
            (ChunkerParams::Rabin(_), Chunker::Rabin(_))
                | (ChunkerParams::FastCdc(_), Chunker::FastCdc(_))
        ));
    }
}

#[test]
fn stream_restart_and_empty_input() {
    let params = ChunkerParams::Rabin(RabinParams::new(P1).unwrap());
    let mut stream = params.stream(&[][..]);
    assert!(stream.next_chunk().unwrap().is_none());

    let a = pseudo_random(2_000_000, 1);
    let b = vec![0u8; 1_500_000];
    let expected_b = lengths(params.chunks(&b));
    let mut stream = params.stream(&a[..]);
    // Abandon `a` part-way, then reuse the buffer for `b`.
    stream.next_chunk().unwrap().unwrap();
    let old = stream.restart(&b[..]);
    assert!(!old.is_empty());
    let got: Vec<usize> = stream.map(|c| c.unwrap().len()).collect();
    assert_eq!(got, expected_b);
}

#[test]
fn stream_propagates_read_errors() {
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
    }
    let mut stream = StreamChunker::new(Failing, FastCdcParams::default().chunker());
    assert_eq!(stream.next_chunk().unwrap_err().to_string(), "disk on fire");
}
