//! Images end to end (root): hostile archives built here are refused and change
//! nothing, whiteouts hide files, layers are shared and counted once, save/load
//! round trips and reads what skopeo writes, export, tag/rmi/history/inspect/prune,
//! and one real Debian bootstrap.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{lab, Lab};
use serde_json::{json, Value};
use twinbox_engine::store::Digest;

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

// ---------- building archives ----------

/// One raw tar entry with full control over the header (tar::Builder refuses
/// the hostile names these tests need).
struct Raw<'a> {
    name: &'a str,
    kind: tar::EntryType,
    link: &'a str,
    data: &'a [u8],
    size: Option<u64>,
    dev: (u32, u32),
}

fn raw<'a>(name: &'a str, kind: tar::EntryType) -> Raw<'a> {
    Raw {
        name,
        kind,
        link: "",
        data: b"",
        size: None,
        dev: (0, 0),
    }
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        data,
        ..raw(name, tar::EntryType::Regular)
    }
}

fn tar_of(entries: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
            old.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        }
        h.set_entry_type(e.kind);
        h.set_mode(if e.kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(e.size.unwrap_or(e.data.len() as u64));
        if matches!(e.kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(e.dev.0).unwrap();
            h.set_device_minor(e.dev.1).unwrap();
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[derive(Clone)]
struct Layer {
    media_type: String,
    blob: Vec<u8>,
    diff_id: Digest,
}

fn plain(tar: Vec<u8>) -> Layer {
    Layer {
        media_type: TAR.into(),
        diff_id: Digest::of(&tar),
        blob: tar,
    }
}

fn gzip(tar: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(tar).unwrap();
    e.finish().unwrap()
}

/// The busybox image's layer, taken from the lab's store.
fn busybox_layer(lab: &Lab) -> Layer {
    let index: Value =
        serde_json::from_slice(&std::fs::read(lab.root().join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let blob = |d: &str| std::fs::read(lab.root().join("blobs/sha256").join(&d[7..])).unwrap();
    let manifest: Value = serde_json::from_slice(&blob(digest)).unwrap();
    let config: Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    Layer {
        media_type: manifest["layers"][0]["mediaType"].as_str().unwrap().into(),
        blob: blob(manifest["layers"][0]["digest"].as_str().unwrap()),
        diff_id: Digest::parse(config["rootfs"]["diff_ids"][0].as_str().unwrap()).unwrap(),
    }
}

/// An OCI image layout tar holding `images` (name, layers bottom first).
/// `claimed` overrides the digest the manifest gives a layer (by index).
fn oci_archive(images: &[(&str, Vec<Layer>)], claimed: Option<(usize, Digest)>) -> Vec<u8> {
    let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut index = Vec::new();
    for (name, layers) in images {
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
            "rootfs": {"type": "layers",
                       "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()},
        }))
        .unwrap();
        let mut descs = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            let mut d = Digest::of(&l.blob);
            if let Some((at, c)) = &claimed {
                if *at == i {
                    d = c.clone();
                }
            }
            descs.push(
                json!({"mediaType": l.media_type, "digest": d.to_string(), "size": l.blob.len()}),
            );
            blobs.insert(d.hex().to_string(), l.blob.clone());
        }
        let config_digest = Digest::of(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest.to_string(), "size": config.len()},
            "layers": descs,
        }))
        .unwrap();
        let manifest_digest = Digest::of(&manifest);
        index.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest.to_string(), "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": name},
        }));
        blobs.insert(config_digest.hex().to_string(), config);
        blobs.insert(manifest_digest.hex().to_string(), manifest);
    }
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    for (hex, data) in &blobs {
        add(&format!("blobs/sha256/{hex}"), data);
    }
    add(
        "index.json",
        &serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": index})).unwrap(),
    );
    b.into_inner().unwrap()
}

/// Every path under the store with file sizes: equal listings mean an
/// unchanged store.
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let md = p.symlink_metadata().unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if md.is_dir() {
                out.push(format!("{rel}/"));
                stack.push(p);
            } else {
                out.push(format!("{rel} {}", md.len()));
            }
        }
    }
    out.sort();
    out
}

fn write_tmp(lab: &Lab, name: &str, data: &[u8]) -> PathBuf {
    let p = lab.root().parent().unwrap().join(format!(
        "{}-{name}",
        lab.root().file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&p, data).unwrap();
    p
}

struct TmpFile(PathBuf);
impl Drop for TmpFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---------- tests ----------

#[test]
fn hostile_archives_are_refused_and_change_nothing() {
    let Some(lab) = lab() else { return };
    let escape = PathBuf::from(format!("/tmp/twinbox-escape-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&escape);
    std::fs::create_dir_all(&escape).unwrap();
    let esc = escape.display().to_string();
    let dotdot = format!("../../../../../../../..{esc}/dotdot");
    let absolute = format!("{esc}/absolute");
    // a host file of this test's own stands for /etc/shadow where the test
    // looks at the target afterwards (the real one changes whenever anything
    // on the host edits users); a hard link or a write through one would show
    // in its link count or its bytes
    let victim = PathBuf::from(format!("/tmp/twinbox-victim-{}", std::process::id()));
    std::fs::write(&victim, b"secret\n").unwrap();
    let _victim_guard = TmpFile(victim.clone());
    let victim_path = victim.display().to_string();
    let victim_in_hosttmp = format!("hosttmp/twinbox-victim-{}", std::process::id());
    let victim_state = || {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&victim).unwrap();
        (m.nlink(), std::fs::read(&victim).unwrap())
    };
    let victim_before = victim_state();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("dotdot", tar_of(&[file(&dotdot, b"x")]), "'..'"),
        ("absolute", tar_of(&[file(&absolute, b"x")]), "absolute"),
        (
            "escaping relative symlink",
            tar_of(&[Raw {
                link: "../../../../../../../../tmp",
                ..raw("evil", tar::EntryType::Symlink)
            }]),
            "outside the layer",
        ),
        (
            "symlink then a write through it",
            tar_of(&[
                Raw {
                    link: &esc,
                    ..raw("evil", tar::EntryType::Symlink)
                },
                file("evil/pwned", b"x"),
            ]),
            "evil/pwned",
        ),
        (
            "hard link to /etc/shadow",
            tar_of(&[Raw {
                link: "/etc/shadow",
                ..raw("shadow", tar::EntryType::Link)
            }]),
            "hard link",
        ),
        (
            "hard link to a host file",
            tar_of(&[Raw {
                link: &victim_path,
                ..raw("victim", tar::EntryType::Link)
            }]),
            "hard link",
        ),
        (
            "hard link to a host file through a symlink to its directory",
            tar_of(&[
                Raw {
                    link: "/tmp",
                    ..raw("hosttmp", tar::EntryType::Symlink)
                },
                Raw {
                    link: &victim_in_hosttmp,
                    ..raw("victim", tar::EntryType::Link)
                },
            ]),
            "victim",
        ),
        (
            "hard link through a symlink to /etc",
            tar_of(&[
                Raw {
                    link: "/etc",
                    ..raw("etc", tar::EntryType::Symlink)
                },
                Raw {
                    link: "etc/shadow",
                    ..raw("shadow", tar::EntryType::Link)
                },
            ]),
            "shadow",
        ),
        (
            "character device",
            tar_of(&[Raw {
                dev: (1, 3),
                ..raw("dev/null", tar::EntryType::Char)
            }]),
            "device node",
        ),
        (
            "block device",
            tar_of(&[Raw {
                dev: (8, 0),
                ..raw("dev/sda", tar::EntryType::Block)
            }]),
            "device node",
        ),
        (
            "absurd size",
            tar_of(&[Raw {
                size: Some(1 << 40),
                ..file("huge", b"")
            }]),
            "absurd size",
        ),
        ("malformed tar", vec![0x5a; 2048], "tar"),
        (
            "truncated tar",
            tar_of(&[file("big", &[7u8; 4096])])[..1536].to_vec(),
            "big",
        ),
    ];

    let before = listing(lab.root());
    let check = |what: &str, archive: Vec<u8>, want: &str| {
        let path = TmpFile(write_tmp(&lab, "hostile.tar", &archive));
        let r = lab.tb(&["load", "-i", path.0.to_str().unwrap()]);
        assert_ne!(r.code, 0, "{what}: accepted: {}", r.stdout);
        let err = r.stderr.trim();
        assert_eq!(err.lines().count(), 1, "{what}: not one line: {err}");
        assert!(err.starts_with("twinbox: "), "{what}: {err}");
        assert!(err.contains(want), "{what}: {err:?} does not say {want:?}");
        assert_eq!(listing(lab.root()), before, "{what}: the store changed");
        assert_eq!(
            std::fs::read_dir(&escape).unwrap().count(),
            0,
            "{what}: something was written outside the store"
        );
        assert!(!Path::new(&absolute).exists());
        assert_eq!(
            victim_state(),
            victim_before,
            "{what}: the host file changed"
        );
        eprintln!("{what}: refused: {err}");
    };
    for (what, layer_tar, want) in cases {
        let archive = oci_archive(&[("hostile:1", vec![plain(layer_tar)])], None);
        check(what, archive, want);
    }

    // a gzip layer cut in half (the manifest's digest matches the cut blob)
    let good = tar_of(&[file("a", &[1u8; 100_000])]);
    let gz = gzip(&good);
    let cut = Layer {
        media_type: GZIP.into(),
        blob: gz[..gz.len() / 2].to_vec(),
        diff_id: Digest::of(&good),
    };
    check(
        "truncated gzip",
        oci_archive(&[("hostile:1", vec![cut])], None),
        "gzip",
    );
    // a layer whose bytes are not what the manifest's digest says
    let other = Digest::of(b"not this layer");
    check(
        "digest mismatch",
        oci_archive(
            &[("hostile:1", vec![plain(tar_of(&[file("a", b"a")]))])],
            Some((0, other)),
        ),
        "digest mismatch",
    );
    // a diff id that is not the uncompressed tar's
    let mut wrong_diff = plain(tar_of(&[file("a", b"a")]));
    wrong_diff.media_type = GZIP.into();
    wrong_diff.blob = gzip(&wrong_diff.blob);
    wrong_diff.diff_id = Digest::of(b"not the tar");
    check(
        "diff id mismatch",
        oci_archive(&[("hostile:1", vec![wrong_diff])], None),
        "diff id mismatch",
    );
    // a second, broken image takes the good first one back with it
    let fine = plain(tar_of(&[file("fine", b"fine")]));
    let broken = plain(tar_of(&[file(&dotdot, b"x")]));
    check(
        "good image then a hostile one",
        oci_archive(&[("good:1", vec![fine]), ("hostile:1", vec![broken])], None),
        "'..'",
    );
    // an unknown media type is named
    let mut odd = plain(tar_of(&[file("a", b"a")]));
    odd.media_type = "application/x-rar-compressed".into();
    check(
        "unsupported media type",
        oci_archive(&[("hostile:1", vec![odd])], None),
        "application/x-rar-compressed",
    );
    // a Docker archive whose manifest.json points outside the archive
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(b"x").to_string()]}}))
    .unwrap();
    let manifest = serde_json::to_vec(&json!([{"Config": "config.json",
        "RepoTags": ["hostile:1"], "Layers": ["../../../../../../etc/shadow"]}]))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [("config.json", &config), ("manifest.json", &manifest)] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    check(
        "docker archive naming a file outside it",
        b.into_inner().unwrap(),
        "etc/shadow\" is missing",
    );
    std::fs::remove_dir_all(&escape).unwrap();
}

#[test]
fn whiteouts_and_opaque_dirs_hide_lower_files() {
    let Some(lab) = lab() else { return };
    let base = plain(tar_of(&[
        raw("data/", tar::EntryType::Directory),
        file("data/keep", b"keep"),
        file("data/gone", b"gone"),
        raw("opq/", tar::EntryType::Directory),
        file("opq/old1", b"1"),
        file("opq/old2", b"2"),
    ]));
    let upper = plain(tar_of(&[
        file("data/.wh.gone", b""),
        raw("opq/", tar::EntryType::Directory),
        file("opq/.wh..wh..opq", b""),
        file("opq/new", b"new"),
    ]));
    let archive = oci_archive(
        &[("course/whiteout:1", vec![busybox_layer(&lab), base, upper])],
        None,
    );
    let path = TmpFile(write_tmp(&lab, "whiteout.tar", &archive));
    let r = lab.tb(&["load", "-i", path.0.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("Loaded image: course/whiteout:1"),
        "{}",
        r.stdout
    );
    let r = lab.tb(&[
        "run",
        "--rm",
        "course/whiteout:1",
        "sh",
        "-c",
        "ls /data; echo --; ls /opq; test -e /data/gone && echo LEAK; true",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "keep\n--\nnew\n");

    // export merges the same way, and sees what the container changed
    let r = lab.tb(&[
        "run",
        "--name",
        "exp",
        "course/whiteout:1",
        "sh",
        "-c",
        "echo made > /data/made; rm /data/keep",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = TmpFile(lab.root().with_extension("export.tar"));
    let r = lab.tb(&["export", "exp", "-o", out.0.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut names = BTreeMap::new();
    let mut a = tar::Archive::new(std::fs::File::open(&out.0).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut s = String::new();
        if e.header().entry_type() == tar::EntryType::Regular {
            e.read_to_string(&mut s).ok();
        }
        names.insert(name, s);
    }
    assert_eq!(names.get("data/made").map(String::as_str), Some("made\n"));
    for hidden in ["data/keep", "data/gone", "opq/old1", "opq/old2"] {
        assert!(!names.contains_key(hidden), "{hidden} exported");
    }
    assert!(names.contains_key("opq/new"));
    assert!(names.contains_key("bin/busybox"));
    // and the export imports back as a working image
    let r = lab.tb(&["import", out.0.to_str().unwrap(), "course/flat:1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lab.tb(&["run", "--rm", "course/flat:1", "cat", "/data/made"]);
    assert_eq!(r.stdout, "made\n", "{}", r.stderr);
}

fn df(lab: &Lab) -> Value {
    let r = lab.tb(&["system", "df", "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

#[test]
fn layers_are_shared_and_counted_once() {
    let Some(lab) = lab() else { return };
    let bb = busybox_layer(&lab);
    let a = plain(tar_of(&[file("a.txt", &[b'a'; 5000])]));
    let b = plain(tar_of(&[file("b.txt", &[b'b'; 7000])]));
    let archive = oci_archive(
        &[
            ("course/a:1", vec![bb.clone(), a]),
            ("course/b:1", vec![bb.clone(), b]),
        ],
        None,
    );
    let path = TmpFile(write_tmp(&lab, "shared.tar", &archive));
    let r = lab.tb(&["load", "-i", path.0.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // busybox's layer once, plus one per image on top
    assert_eq!(
        std::fs::read_dir(lab.root().join("layers"))
            .unwrap()
            .count(),
        3
    );
    let v = df(&lab);
    let layers = v["LayerList"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    let base = layers
        .iter()
        .find(|l| l["DiffID"] == bb.diff_id.to_string())
        .unwrap();
    assert_eq!(base["Images"], 3, "{base}");
    let base_size = base["Size"].as_u64().unwrap();
    assert!(base_size > 500_000, "{base}");
    let sum: u64 = layers.iter().map(|l| l["Size"].as_u64().unwrap()).sum();
    assert_eq!(v["Layers"]["Size"].as_u64().unwrap(), sum);
    let images = v["ImageList"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    let per_image: u64 = images.iter().map(|i| i["Size"].as_u64().unwrap()).sum();
    // counted per image the base appears three times; the total has it once
    assert_eq!(per_image, sum + 2 * base_size);
    for i in images {
        assert_eq!(i["SharedSize"].as_u64().unwrap(), base_size, "{i}");
    }
    let r = lab.tb(&["system", "df", "-v"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("SHARED SIZE"), "{}", r.stdout);

    // removing one image keeps the shared base and the other image
    let r = lab.tb(&["rmi", "course/a:1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Untagged: course/a:1") && r.stdout.contains("Deleted: sha256:"));
    assert_eq!(
        std::fs::read_dir(lab.root().join("layers"))
            .unwrap()
            .count(),
        2
    );
    let r = lab.tb(&["run", "--rm", "course/b:1", "cat", "/b.txt"]);
    assert_eq!(r.stdout.len(), 7000, "{}", r.stderr);
}

#[test]
fn save_rmi_load_run_round_trip() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&["tag", "busybox", "course/rt:v1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let script = "echo round trip; ls /bin | wc -l";
    let first = lab.tb(&["run", "--rm", "course/rt:v1", "sh", "-c", script]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let ids = |lab: &Lab| {
        let out = lab.tb(&["images", "-q"]).stdout;
        out.lines()
            .map(str::to_string)
            .collect::<std::collections::BTreeSet<_>>()
    };
    let id_before = ids(&lab);
    assert_eq!(id_before.len(), 1);
    let archive = TmpFile(lab.root().with_extension("save.tar"));
    let r = lab.tb(&["save", "-o", archive.0.to_str().unwrap(), "course/rt:v1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lab.tb(&["rmi", "busybox", "course/rt:v1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(lab.tb(&["images", "-q"]).stdout, "");
    assert_eq!(
        std::fs::read_dir(lab.root().join("layers"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(lab.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    // from stdin, as `docker load < file`
    let r = lab
        .cmd(&["load"])
        .stdin(std::fs::File::open(&archive.0).unwrap())
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        "Loaded image: course/rt:v1\n"
    );
    let again = lab.tb(&["run", "--rm", "course/rt:v1", "sh", "-c", script]);
    assert_eq!(again.stdout, first.stdout, "{}", again.stderr);
    assert_eq!(ids(&lab), id_before);
    // loading what is already there adds nothing
    let before = listing(lab.root());
    let r = lab.tb(&["load", "-i", archive.0.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(listing(lab.root()), before);
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

#[test]
fn archives_interoperate_with_skopeo() {
    let Some(lab) = lab() else { return };
    if !have("skopeo") {
        eprintln!("skipping: skopeo is not installed (scripts/install-deps.sh installs it)");
        return;
    }
    let saved = TmpFile(lab.root().with_extension("bb.tar"));
    let r = lab.tb(&["save", "-o", saved.0.to_str().unwrap(), "busybox"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let inspect = |transport: &str| {
        let o = Command::new("skopeo")
            .args(["inspect", &format!("{transport}:{}", saved.0.display())])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "skopeo inspect {transport}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    let oci = inspect("oci-archive");
    let docker = inspect("docker-archive");
    assert_eq!(oci["Os"], "linux");
    assert_eq!(docker["Layers"].as_array().unwrap().len(), 1);

    // what skopeo writes, both formats, twinbox loads and runs
    let docker_out = TmpFile(lab.root().with_extension("skopeo-docker.tar"));
    let oci_out = TmpFile(lab.root().with_extension("skopeo-oci.tar"));
    for (src, dst) in [
        (
            format!("oci-archive:{}", saved.0.display()),
            format!(
                "docker-archive:{}:course/from-skopeo:docker",
                docker_out.0.display()
            ),
        ),
        (
            format!("docker-archive:{}", saved.0.display()),
            format!("oci-archive:{}:course/from-skopeo:oci", oci_out.0.display()),
        ),
    ] {
        let o = Command::new("skopeo")
            .args(["copy", "-q", &src, &dst])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "skopeo copy {src} {dst}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    for (file, name) in [
        (&docker_out, "course/from-skopeo:docker"),
        (&oci_out, "course/from-skopeo:oci"),
    ] {
        let r = lab.tb(&["load", "-i", file.0.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.contains(name), "{}", r.stdout);
        let r = lab.tb(&["run", "--rm", name, "echo", "ok"]);
        assert_eq!(r.stdout, "ok\n", "{name}: {}", r.stderr);
    }
    // The same content and config everywhere: skopeo may re-serialize a config
    // (so the image id can change), but the layers and the run config may not.
    let fingerprint = |name: &str| {
        let r = lab.tb(&["image", "inspect", name]);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        (
            v[0]["RootFS"]["Layers"].clone(),
            v[0]["Config"]["Cmd"].clone(),
            v[0]["Config"]["Env"].clone(),
        )
    };
    let original = fingerprint("busybox");
    assert!(
        original.0.as_array().is_some_and(|l| l.len() == 1),
        "{original:?}"
    );
    for name in ["course/from-skopeo:docker", "course/from-skopeo:oci"] {
        assert_eq!(fingerprint(name), original, "{name}");
    }
}

#[test]
fn tag_rmi_history_inspect_prune() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&["tag", "busybox", "course/base:v1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lab.tb(&["image", "inspect", "course/base:v1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let img = &v[0];
    assert!(img["Id"].as_str().unwrap().starts_with("sha256:"));
    let tags: Vec<&str> = img["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tags.contains(&"busybox:latest") && tags.contains(&"course/base:v1"),
        "{tags:?}"
    );
    assert_eq!(img["Os"], "linux");
    assert_eq!(img["Architecture"], "amd64");
    assert_eq!(img["RootFS"]["Type"], "layers");
    assert_eq!(img["Config"]["Cmd"][0], "sh");
    assert!(img["Size"].as_u64().unwrap() > 500_000);

    let r = lab.tb(&["history", "busybox"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("IMAGE"), "{}", r.stdout);
    assert!(
        lines[1].contains("CMD [\"sh\"]") && lines[1].contains("0B"),
        "{}",
        r.stdout
    );
    assert!(
        lines[2].contains("<missing>") && lines[2].contains("MB"),
        "{}",
        r.stdout
    );

    // an id with two names, and an image a container uses, need -f
    let id = img["Id"].as_str().unwrap()[7..19].to_string();
    let r = lab.tb(&["rmi", &id]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("-f"), "{}", r.stderr);
    let r = lab.tb(&["rmi", "busybox"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "Untagged: busybox:latest\n");
    let r = lab.tb(&["create", "--name", "user", "course/base:v1", "true"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lab.tb(&["rmi", "course/base:v1"]);
    assert_eq!(r.code, 125, "{}", r.stdout);
    assert!(
        r.stderr.contains("user") && r.stderr.contains("-f"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.trim().lines().count(), 1);
    let r = lab.tb(&["rmi", "-f", "course/base:v1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // the container still has its layers
    let layers = std::fs::read_dir(lab.root().join("layers"))
        .unwrap()
        .count();
    assert_eq!(layers, 1);
    // once the container goes, prune frees the layer
    assert_eq!(lab.tb(&["rm", "-f", "user"]).code, 0);
    let r = lab.tb(&["image", "prune", "-f"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("deleted layer"), "{}", r.stdout);
    assert_eq!(
        std::fs::read_dir(lab.root().join("layers"))
            .unwrap()
            .count(),
        0
    );

    let r = lab.tb(&["rmi", "nosuch:image"]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("no such image"), "{}", r.stderr);
}

#[test]
fn debian_bootstrap_from_the_mirror() {
    let Some(lab) = lab() else { return };
    if !have("mmdebstrap") {
        eprintln!("skipping: mmdebstrap is not installed (scripts/install-deps.sh installs it)");
        return;
    }
    let r = lab.tb(&[
        "image",
        "bootstrap",
        "debian:bookworm",
        "--packages",
        "python3-minimal",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with("debian:bookworm sha256:"),
        "{}",
        r.stdout
    );
    let r = lab.tb(&[
        "run",
        "--rm",
        "debian:bookworm",
        "bash",
        "-c",
        "python3 -c 'print(6*7)'; . /etc/os-release; echo $VERSION_CODENAME",
    ]);
    assert_eq!(r.stdout, "42\nbookworm\n", "{}", r.stderr);
    let r = lab.tb(&["image", "inspect", "debian:bookworm"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["Config"]["Cmd"][0], "bash");
    assert_eq!(
        v[0]["Config"]["Labels"]["org.opencontainers.image.version"],
        "12"
    );
    let r = lab.tb(&["history", "--no-trunc", "debian:bookworm"]);
    assert!(
        r.stdout.contains("mmdebstrap --variant=minbase"),
        "{}",
        r.stdout
    );
}

/// `images` lists the newest image first, as Docker: two imports after the
/// bootstrapped busybox come out last-imported first, busybox (and its other
/// tag) after them; `images REPO` keeps that order.
#[test]
fn images_are_listed_newest_first() {
    let Some(lab) = lab() else { return };
    assert_eq!(lab.tb(&["tag", "busybox", "course/tagged:1"]).code, 0);
    for name in ["course/older:1", "course/newer:1"] {
        let tar = lab.root().join("rootfs.tar");
        common::tar_with_file(&tar, "hello", name.as_bytes(), 0o644);
        let r = lab.tb(&["import", tar.to_str().unwrap(), name]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let r = lab.tb(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(rows[..2], ["course/newer:1", "course/older:1"], "{rows:?}");
    let mut rest = rows[2..].to_vec();
    rest.sort();
    assert_eq!(rest, ["busybox:latest", "course/tagged:1"], "{rows:?}");
    let r = lab.tb(&["images", "--format", "{{.Repository}}", "course/newer"]);
    assert_eq!(r.stdout, "course/newer\n");
}
