//! Fuzz targets that run on stable, inside `cargo test`: every parser that reads what a
//! user or a remote party wrote gets generated and mutated input. Each target asserts
//! that the parser never panics and that what it accepts is consistent (round trips,
//! exact arithmetic, nothing written outside the layer). Each target runs for a time
//! budget (`TWINBOX_FUZZ_SECONDS`, 3 s by default so CI time stays fixed; see
//! fuzz/budget.rs); a failing input is kept in `fuzz.proptest-regressions` beside
//! this file and replayed first on every run, and the bugs found are pinned as plain
//! regression tests at the end.
//!
//! Targets: image references, memory sizes, durations, Dockerfiles, layer tar
//! streams (unpacker and the whole ingest path), image documents (index,
//! manifest, config, Docker's manifest.json: the JSON a registry or an archive
//! hands us) through `load`, and a registry's own answers (a manifest's media
//! type from its header and body, `WWW-Authenticate` challenges). The virtqueue
//! parser has its own in the microvm crate.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use twinbox_engine::build::builder::parse_duration;
use twinbox_engine::build::dockerfile;
use twinbox_engine::cgroups::parse_memory_size;
use twinbox_engine::image::ingest::{ingest_layer, LayerSource};
use twinbox_engine::image::load::load_reader;
use twinbox_engine::image::Reference;
use twinbox_engine::store::blobs::Digest;
use twinbox_engine::store::unpack::unpack_layer;
use twinbox_engine::store::Store;
use twinbox_engine::system::check;
use twinbox_engine::system::InUse;

#[path = "fuzz/budget.rs"]
mod budget;

use budget::fuzz;

// ---------------------------------------------------------------- image references

fn reference_text() -> impl Strategy<Value = String> {
    prop_oneof![
        // Mostly the characters references are made of, so the parser goes deep.
        "[a-zA-Z0-9._:/@-]{0,64}",
        // Shapes that look right, with a digest sometimes.
        (
            "([a-z0-9]{1,8}(\\.[a-z]{2,3})?(:[0-9]{1,5})?/)?[a-z0-9._-]{1,12}(/[a-z0-9_-]{1,8}){0,2}",
            proptest::option::of("[a-zA-Z0-9_.-]{1,20}"),
            proptest::option::of("[0-9a-fA-F]{62,66}"),
        )
            .prop_map(|(name, tag, hex)| {
                let mut s = name;
                if let Some(t) = tag {
                    s = format!("{s}:{t}");
                }
                if let Some(h) = hex {
                    s = format!("{s}@sha256:{h}");
                }
                s
            }),
        any::<String>(),
    ]
}

/// Whatever the parser accepts prints back to a reference that parses to itself.
#[test]
fn image_reference_round_trips() {
    fuzz(
        "image_reference_round_trips",
        2000,
        reference_text(),
        |text| {
            if let Ok(r) = Reference::parse(&text) {
                let full = r.full();
                let again = Reference::parse(&full)
                    .map_err(|e| TestCaseError::fail(format!("{full:?} from {text:?}: {e}")))?;
                prop_assert_eq!(&again, &r);
                prop_assert_eq!(again.full(), full);
                // The short form people type means the same image.
                let familiar = Reference::parse(&r.familiar())
                    .map_err(|e| TestCaseError::fail(format!("familiar of {text:?}: {e}")))?;
                prop_assert_eq!(familiar.full(), r.full());
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------- sizes and durations

#[test]
fn memory_size_never_panics() {
    let text = prop_oneof!["[0-9.kmgtbKMGTB -]{0,24}", any::<String>()];
    fuzz("memory_size_never_panics", 2000, text, |text| {
        let _ = parse_memory_size(&text);
        Ok(())
    });
}

/// `N<unit>` is exactly N times the unit, and too big for 64 bits is an error.
#[test]
fn memory_size_is_exact() {
    let values = (any::<u64>(), 0usize..5, any::<bool>(), any::<bool>());
    fuzz(
        "memory_size_is_exact",
        2000,
        values,
        |(n, unit, upper, b)| {
            let (suffix, shift) = [("", 0u32), ("k", 10), ("m", 20), ("g", 30), ("t", 40)][unit];
            let mut s = format!("{n}{suffix}");
            if b && !suffix.is_empty() {
                s.push('b');
            }
            if upper {
                s = s.to_ascii_uppercase();
            }
            let expected = n.checked_mul(1u64 << shift);
            match (parse_memory_size(&s), expected) {
                (Ok(v), Some(e)) => prop_assert_eq!(v, e),
                (Err(_), None) => {}
                (got, e) => prop_assert!(false, "{s:?}: got {got:?}, expected {e:?}"),
            }
            Ok(())
        },
    );
}

#[test]
fn duration_never_panics() {
    let text = prop_oneof!["[0-9.hmsnuµ]{0,24}", any::<String>()];
    fuzz("duration_never_panics", 2000, text, |text| {
        let _ = parse_duration(&text);
        Ok(())
    });
}

/// `XhYmZs` is exactly that many nanoseconds.
#[test]
fn duration_is_exact() {
    let parts = (0u64..1000, 0u64..1000, 0u64..1000, 0u64..1000);
    fuzz("duration_is_exact", 2000, parts, |(h, m, s, ms)| {
        let text = format!("{h}h{m}m{s}s{ms}ms");
        let expected = ((h * 3600 + m * 60 + s) * 1000 + ms) * 1_000_000;
        prop_assert_eq!(parse_duration(&text), Ok(expected));
        Ok(())
    });
}

// ---------------------------------------------------------------- Dockerfiles

fn dockerfile_text() -> impl Strategy<Value = String> {
    let keyword = prop::sample::select(vec![
        "FROM",
        "RUN",
        "CMD",
        "ENTRYPOINT",
        "ENV",
        "ARG",
        "LABEL",
        "EXPOSE",
        "WORKDIR",
        "USER",
        "VOLUME",
        "COPY",
        "ADD",
        "ONBUILD",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "SHELL",
        "MAINTAINER",
        "from",
        "Run",
        "BOGUS",
        "#",
        "# syntax=docker/dockerfile:1",
        "# escape=`",
        "# escape=\\",
        "",
    ]);
    let piece = prop::sample::select(vec![
        "busybox",
        "scratch",
        "AS",
        "base",
        "--from=base",
        "--from=0",
        "--chown=1:1",
        "--chmod=755",
        "--mount=type=cache,target=/c",
        "--mount=type=secret,id=s",
        "--network=none",
        "--platform=linux/amd64",
        "--link",
        "--parents",
        "--exclude=*.x",
        "[",
        "]",
        "\"",
        "\"a\",",
        "'",
        "$A",
        "${A}",
        "${A:-b}",
        "${A:+c}",
        "${A",
        "${}",
        "\\",
        "\\\n",
        "`",
        "`\n",
        "<<EOF",
        "<<-EOF",
        "\nEOF",
        "\nhello\n",
        "=",
        "A=1",
        "B=\"x y\"",
        "*",
        "?",
        "../x",
        "/abs",
        "5000/tcp",
        "70000",
        "--interval=5s",
        "NONE",
        "\t",
        "  ",
        "é",
        "\u{0}",
    ]);
    let line = (keyword, prop::collection::vec(piece, 0..6), any::<bool>()).prop_map(
        |(k, pieces, tight)| {
            let sep = if tight { "" } else { " " };
            format!("{k} {}", pieces.join(sep))
        },
    );
    prop_oneof![
        8 => prop::collection::vec(line, 0..12).prop_map(|l| l.join("\n")),
        1 => any::<String>(),
    ]
}

/// Any text gives a Dockerfile or a list of problems with line numbers inside
/// the file, never a panic.
#[test]
fn dockerfile_parser_never_panics() {
    fuzz(
        "dockerfile_parser_never_panics",
        3000,
        dockerfile_text(),
        |text| {
            let lines = text.lines().count().max(1);
            let (_, problems) = dockerfile::parse_with_problems(&text);
            for p in &problems {
                prop_assert!(
                    p.line <= lines + 1,
                    "problem on line {} of {lines}: {p:?}",
                    p.line
                );
            }
            let _ = dockerfile::parse(&text);
            Ok(())
        },
    );
}

// ---------------------------------------------------------------- layer tar streams

/// One tar entry as a hostile or broken archive could carry it.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    kind: u8,
    link: String,
    data: Vec<u8>,
    pax_path: Option<String>,
}

/// Names made only of harmless pieces: even a broken unpacker following an absolute
/// name or a chain of `..` could only touch paths called `twfz-*`, checked afterwards.
fn path_text() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "twfz-a",
        "twfz-b",
        "twfz-c",
        "..",
        ".",
        "",
        ".wh.twfz-a",
        ".wh..wh..opq",
        ".wh.",
        "twfz-long-name-twfz-long-name-twfz-long-name-twfz-long-name-twfz-long",
    ]);
    (
        any::<bool>(),
        prop::collection::vec(piece, 1..5),
        any::<bool>(),
    )
        .prop_map(|(absolute, pieces, slash)| {
            let mut s = pieces.join("/");
            if absolute {
                s.insert(0, '/');
            }
            if slash {
                s.push('/');
            }
            s
        })
}

fn entry() -> impl Strategy<Value = Entry> {
    let kind = prop::sample::select(vec![
        b'0', b'0', b'5', b'2', b'1', b'3', b'6', b'7', b'x', b'L', b'Z',
    ]);
    (
        path_text(),
        kind,
        path_text(),
        prop::collection::vec(any::<u8>(), 0..64),
        proptest::option::weighted(0.1, path_text()),
    )
        .prop_map(|(name, kind, link, data, pax_path)| Entry {
            name,
            kind,
            link,
            data,
            pax_path,
        })
}

fn header(name: &str, kind: u8, link: &str, size: usize) -> [u8; 512] {
    let mut h = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, max: usize, bytes: &[u8]| {
        let n = bytes.len().min(max);
        h[at..at + n].copy_from_slice(&bytes[..n]);
    };
    put(&mut h, 0, 100, name.as_bytes());
    put(&mut h, 100, 8, b"0000755\0");
    put(&mut h, 108, 8, b"0000000\0");
    put(&mut h, 116, 8, b"0000000\0");
    put(&mut h, 124, 12, format!("{size:011o}\0").as_bytes());
    put(&mut h, 136, 12, b"00000000000\0");
    h[156] = kind;
    put(&mut h, 157, 100, link.as_bytes());
    put(&mut h, 257, 8, b"ustar\x0000");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    put(&mut h, 148, 8, format!("{sum:06o}\0 ").as_bytes());
    h
}

fn push_entry(out: &mut Vec<u8>, name: &str, kind: u8, link: &str, data: &[u8]) {
    out.extend_from_slice(&header(name, kind, link, data.len()));
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn tar_bytes(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        if let Some(p) = &e.pax_path {
            let record = format!(" path={p}\n");
            let record = format!(
                "{}{record}",
                record.len() + 2 + usize::from(record.len() + 2 >= 100)
            );
            push_entry(&mut out, "PaxHeaders/x", b'x', "", record.as_bytes());
        }
        let data: &[u8] = if matches!(e.kind, b'0' | b'7') {
            &e.data
        } else {
            &[]
        };
        push_entry(&mut out, &e.name, e.kind, &e.link, data);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A tar stream, sometimes cut short or with a byte changed.
fn tar_stream() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(entry(), 0..8),
        proptest::option::weighted(0.2, any::<prop::sample::Index>()),
        proptest::option::weighted(0.2, (any::<prop::sample::Index>(), any::<u8>())),
    )
        .prop_map(|(entries, cut, flip)| {
            let mut bytes = tar_bytes(&entries);
            if let Some((at, b)) = flip {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            if let Some(at) = cut {
                bytes.truncate(at.index(bytes.len() + 1));
            }
            bytes
        })
}

/// Every path under `dir`, relative, skipping `skip`.
fn listing(dir: &Path, skip: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p == skip {
                continue;
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p.clone());
            }
            out.insert(p.strip_prefix(dir).unwrap_or(&p).to_path_buf());
        }
    }
    out
}

/// Nothing named `twfz-*` appeared at the places a broken unpacker would write to.
fn no_escape(outside: &Path) -> Result<(), TestCaseError> {
    for dir in [Path::new("/"), Path::new("/tmp"), outside] {
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                let name = e.file_name();
                prop_assert!(
                    !name.to_string_lossy().starts_with("twfz-"),
                    "{} was written outside the layer",
                    e.path().display()
                );
            }
        }
    }
    Ok(())
}

/// A directory deep enough that no generated chain of `..` climbs out of the temp dir.
fn deep_dst(root: &Path) -> PathBuf {
    let mut dst = root.to_path_buf();
    for i in 0..48 {
        dst.push(format!("d{i}"));
    }
    fs::create_dir_all(&dst).expect("create the layer dir");
    dst
}

/// The unpacker either writes a layer inside its directory or refuses, never a
/// panic and never a byte outside.
#[test]
fn unpacker_stays_inside_the_layer() {
    fuzz(
        "unpacker_stays_inside_the_layer",
        600,
        tar_stream(),
        |bytes| {
            let tmp = tempfile::tempdir().expect("tempdir");
            let outside = tmp.path().join("outside");
            fs::create_dir(&outside).expect("outside dir");
            fs::write(outside.join("sentinel"), b"keep").expect("sentinel");
            let dst = deep_dst(&tmp.path().join("layer"));
            let before = listing(tmp.path(), &dst);
            let _ = unpack_layer(bytes.as_slice(), &dst);
            prop_assert_eq!(listing(tmp.path(), &dst), before);
            prop_assert_eq!(
                fs::read(outside.join("sentinel")).ok(),
                Some(b"keep".to_vec())
            );
            no_escape(&outside)
        },
    );
}

/// The whole ingest path (decompression by media type, digest and diff id checks,
/// commit into the store) on gzip and plain streams, right or wrong: a refused
/// layer leaves the store's blobs and layers as they were.
#[test]
fn ingest_refuses_cleanly() {
    let inputs = (
        tar_stream(),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..64),
    );
    fuzz(
        "ingest_refuses_cleanly",
        600,
        inputs,
        |(bytes, gzip, honest, garbage)| {
            use std::io::Write;
            let tmp = tempfile::tempdir().expect("tempdir");
            let store = Store::open(tmp.path().join("store")).expect("store");
            let diff_id = Digest::of(&bytes);
            let (media_type, blob) = if gzip {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&bytes).expect("gzip");
                let mut blob = gz.finish().expect("gzip");
                if !honest {
                    blob.extend_from_slice(&garbage);
                }
                ("application/vnd.oci.image.layer.v1.tar+gzip", blob)
            } else {
                ("application/vnd.oci.image.layer.v1.tar", bytes.clone())
            };
            let digest = if honest {
                Digest::of(&blob)
            } else {
                Digest::of(&garbage)
            };
            let kept = |s: &Store| {
                (
                    listing(&s.root().join("blobs"), Path::new("")),
                    listing(&s.root().join("layers"), Path::new("")),
                )
            };
            let before = kept(&store);
            let src = LayerSource {
                media_type,
                digest: &digest,
                size: Some(blob.len() as u64),
                diff_id: &diff_id,
            };
            let result = ingest_layer(&store, None, &src, blob.as_slice(), &mut |_| {});
            // A lease lives as long as its process, as the CLI's commands do; one
            // process running thousands of cases ends each one's lease itself.
            store.release_lease();
            if result.is_err() {
                prop_assert_eq!(kept(&store), before);
            }
            no_escape(&tmp.path().join("outside"))
        },
    );
}

// ---------------------------------------------------------------- image documents

/// A document in an archive: right, wrong in one field, or replaced by junk.
#[derive(Debug, Clone, Copy)]
enum Doc {
    Honest,
    WrongDigest,
    WrongSize,
    Malformed,
    Junk,
}

fn doc() -> impl Strategy<Value = Doc> {
    prop_oneof![
        6 => Just(Doc::Honest),
        1 => Just(Doc::WrongDigest),
        1 => Just(Doc::WrongSize),
        1 => Just(Doc::Malformed),
        1 => Just(Doc::Junk),
    ]
}

/// JSON values of any shape, for documents replaced by junk.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z:0-9./+]{0,16}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "schemaVersion",
                    "mediaType",
                    "manifests",
                    "config",
                    "layers",
                    "digest",
                    "size",
                    "rootfs",
                    "diff_ids",
                    "platform",
                    "annotations",
                    "Config",
                    "Layers",
                    "RepoTags",
                ])
                .prop_map(String::from),
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Debug, Clone)]
struct ImageArchive {
    layers: Vec<(Vec<u8>, bool, Doc)>,
    config: Doc,
    manifest: Doc,
    diff_ids: Doc,
    manifest_type: &'static str,
    name: String,
    docker: bool,
    junk: serde_json::Value,
}

fn image_archive() -> impl Strategy<Value = ImageArchive> {
    let layer = (prop::collection::vec(entry(), 0..3), any::<bool>(), doc())
        .prop_map(|(entries, gzip, doc)| (tar_bytes(&entries), gzip, doc));
    (
        prop::collection::vec(layer, 0..3),
        (doc(), doc(), doc()),
        prop::sample::select(vec![
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "text/plain",
        ]),
        reference_text(),
        any::<bool>(),
        json_value(),
    )
        .prop_map(
            |(layers, (config, manifest, diff_ids), manifest_type, name, docker, junk)| {
                ImageArchive {
                    layers,
                    config,
                    manifest,
                    diff_ids,
                    manifest_type,
                    name,
                    docker,
                    junk,
                }
            },
        )
}

fn sha(data: &[u8]) -> String {
    Digest::of(data).to_string()
}

/// The document as `doc` says: the honest JSON, one field made wrong, or junk.
fn render(doc: Doc, honest: serde_json::Value, junk: &serde_json::Value) -> Vec<u8> {
    let mut v = honest;
    match doc {
        Doc::Honest => {}
        Doc::WrongDigest => {
            let at = if v.pointer("/config/digest").is_some() {
                "/config/digest"
            } else {
                "/rootfs/diff_ids/0"
            };
            if let Some(d) = v.pointer_mut(at) {
                *d = serde_json::json!(format!("sha256:{}", "0".repeat(64)));
            }
        }
        Doc::WrongSize => {
            if let Some(n) = v.pointer_mut("/config/size") {
                *n = serde_json::json!(u64::MAX);
            }
        }
        Doc::Malformed => return b"{\"schemaVersion\": 2, \"config\": ".to_vec(),
        Doc::Junk => v = junk.clone(),
    }
    serde_json::to_vec(&v).expect("json")
}

fn archive_bytes(a: &ImageArchive) -> Vec<u8> {
    use serde_json::json;
    use std::io::Write;
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    let (mut descs, mut diff_ids) = (Vec::new(), Vec::new());
    for (tar, gzip, doc) in &a.layers {
        diff_ids.push(sha(tar));
        let (blob, media_type) = if *gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(tar).expect("gzip");
            (
                gz.finish().expect("gzip"),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        } else {
            (tar.clone(), "application/vnd.oci.image.layer.v1.tar")
        };
        let digest = match doc {
            Doc::WrongDigest => format!("sha256:{}", "1".repeat(64)),
            Doc::Malformed => "sha256:not-hex".into(),
            _ => sha(&blob),
        };
        let size = match doc {
            Doc::WrongSize => blob.len() as u64 + 7,
            _ => blob.len() as u64,
        };
        descs.push(json!({"mediaType": media_type, "digest": digest, "size": size}));
        blobs.push(blob);
    }
    let config = render(
        a.diff_ids,
        json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
               "rootfs": {"type": "layers", "diff_ids": diff_ids}}),
        &a.junk,
    );
    let config = if matches!(a.config, Doc::Junk) {
        render(Doc::Junk, json!({}), &a.junk)
    } else {
        config
    };
    let manifest = render(
        a.manifest,
        json!({"schemaVersion": 2, "mediaType": a.manifest_type,
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                          "digest": sha(&config), "size": config.len()},
               "layers": descs}),
        &a.junk,
    );
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": a.manifest_type, "digest": sha(&manifest), "size": manifest.len(),
        "platform": {"os": "linux", "architecture": "amd64"},
        "annotations": {"org.opencontainers.image.ref.name": a.name}}]});
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        (
            "index.json".into(),
            serde_json::to_vec(&index).expect("json"),
        ),
    ];
    if a.docker {
        let layers: Vec<String> = blobs
            .iter()
            .map(|b| format!("blobs/sha256/{}", Digest::of(b).hex()))
            .collect();
        let doc = json!([{"Config": format!("blobs/sha256/{}", Digest::of(&config).hex()),
                          "RepoTags": [a.name], "Layers": layers}]);
        files.push((
            "manifest.json".into(),
            serde_json::to_vec(&doc).expect("json"),
        ));
    }
    blobs.push(config);
    blobs.push(manifest);
    for b in blobs {
        files.push((format!("blobs/sha256/{}", Digest::of(&b).hex()), b));
    }
    let mut out = Vec::new();
    for (name, data) in files {
        push_entry(&mut out, &name, b'0', "", &data);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// `load` of an archive whose documents are right, subtly wrong or junk: a
/// refusal leaves the store as it was, an accepted image checks clean.
#[test]
fn load_refuses_bad_documents_cleanly() {
    fuzz(
        "load_refuses_bad_documents_cleanly",
        300,
        image_archive(),
        |a| {
            let tmp = tempfile::tempdir().expect("tempdir");
            let store = Store::open(tmp.path().join("store")).expect("store");
            let kept = |s: &Store| {
                (
                    listing(&s.root().join("blobs"), Path::new("")),
                    listing(&s.root().join("layers"), Path::new("")),
                    fs::read(s.root().join("index.json")).ok(),
                )
            };
            let before = kept(&store);
            let bytes = archive_bytes(&a);
            let result = load_reader(&store, bytes.as_slice(), &mut |_, _| {}, &InUse);
            store.release_lease();
            match result {
                Err(_) => prop_assert_eq!(kept(&store), before),
                Ok(_) => {
                    let report = check(&store, false).expect("check");
                    prop_assert!(report.problems.is_empty(), "{:?}", report.problems);
                }
            }
            no_escape(&tmp.path().join("outside"))
        },
    );
}

// ---------------------------------------------------------------- registry answers

/// What a registry answers a manifest request with: a Content-Type header (or
/// none) and a body that is a manifest, an index, schema 1 or anything at all.
fn manifest_answer() -> impl Strategy<Value = (Option<String>, Vec<u8>)> {
    let content_type = proptest::option::of(prop_oneof![
        Just("application/vnd.oci.image.manifest.v1+json".to_string()),
        Just("application/vnd.oci.image.index.v1+json".to_string()),
        Just("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8".to_string()),
        Just("application/json".to_string()),
        any::<String>(),
    ]);
    let body = prop_oneof![
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        (
            json_value(),
            json_value(),
            json_value(),
            proptest::option::of(0u32..3)
        )
            .prop_map(|(media_type, manifests, layers, schema)| {
                let mut doc = serde_json::json!({});
                for (key, value) in [
                    ("mediaType", media_type),
                    ("manifests", manifests),
                    ("layers", layers),
                ] {
                    if !value.is_null() {
                        doc[key] = value;
                    }
                }
                if let Some(v) = schema {
                    doc["schemaVersion"] = v.into();
                }
                serde_json::to_vec(&doc).unwrap()
            }),
        prop::collection::vec(any::<u8>(), 0..64),
    ];
    (content_type, body)
}

/// Text for a challenge parameter's value: quotes, backslashes, commas, `=`.
fn challenge_value() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9:/._ ,=\"\\\\-]{0,24}", any::<String>()]
}

/// A manifest answer is classified or refused with an error, never a panic; what
/// is classified is one of the four manifest media types.
#[test]
fn registry_manifest_answers_are_classified_or_refused() {
    use twinbox_engine::registry::media::{
        classify, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST,
    };
    fuzz(
        "registry_manifest_answers_are_classified_or_refused",
        2000,
        manifest_answer(),
        |(content_type, body)| {
            if let Ok((_, media_type)) = classify(content_type.as_deref(), &body, "fuzz:1") {
                prop_assert!(
                    [
                        OCI_MANIFEST,
                        OCI_INDEX,
                        DOCKER_MANIFEST,
                        DOCKER_MANIFEST_LIST
                    ]
                    .contains(&media_type.as_str()),
                    "classified as {media_type:?}"
                );
            }
            Ok(())
        },
    );
}

/// A `WWW-Authenticate` header never panics the parser, and a Bearer challenge
/// built from any quoted values gives those values back.
#[test]
fn registry_challenges_give_back_their_values() {
    use twinbox_engine::registry::auth::Challenge;
    let inputs = (
        challenge_value(),
        challenge_value(),
        challenge_value(),
        any::<String>(),
    );
    fuzz(
        "registry_challenges_give_back_their_values",
        2000,
        inputs,
        |(realm, service, scope, junk)| {
            let _ = Challenge::parse(&junk);
            let quote = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
            let header = format!(
                "Bearer realm={},service={},scope={}",
                quote(&realm),
                quote(&service),
                quote(&scope)
            );
            prop_assert_eq!(
                Challenge::parse(&header),
                Some(Challenge::Bearer {
                    realm,
                    service: Some(service),
                    scope: Some(scope)
                }),
                "{}",
                header
            );
            Ok(())
        },
    );
}

// ---------------------------------------------------------------- what the fuzzing found

/// A reference with both a tag and a digest lost its digest in the short form, so
/// `images` and error messages named a different image than the one pinned.
#[test]
fn familiar_form_keeps_tag_and_digest() {
    let text = format!("busybox:1.36@sha256:{}", "ab".repeat(32));
    let r = Reference::parse(&text).expect("parse");
    assert_eq!(r.familiar(), text);
}

/// A multi-byte character in the first four bytes of a Dockerfile line made the
/// heredoc rewrite slice inside it and panic.
#[test]
fn dockerfile_line_starting_with_multibyte_text_is_a_problem_not_a_panic() {
    let (_, problems) = dockerfile::parse_with_problems("¡ა\n");
    assert!(
        !problems.is_empty(),
        "an unknown instruction must be reported"
    );
    let (_, problems) = dockerfile::parse_with_problems("FROM busybox\nRUᅊ echo\n");
    assert!(problems.iter().any(|p| p.line == 2), "{problems:?}");
}
