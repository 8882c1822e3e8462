//! Images a lesson makes for itself: a few files as one layer, with the
//! architecture they are for (the arch lesson's arm64 busybox).

use oci_spec::image::Arch;
use twinbox_engine::image::bootstrap::{header, single_layer_config};
use twinbox_engine::image::layer::{commit_layer, write_image};
use twinbox_engine::image::{Image, Reference};
use twinbox_engine::store::Store;

use crate::LessonError;

/// An image of one layer holding `files` (path in the image, content; all
/// executable, owned by root), for `arch`, named `name`.
pub fn single_layer(
    store: &Store,
    name: &str,
    files: &[(&str, Vec<u8>)],
    arch: Arch,
    created_by: &str,
) -> Result<Image, LessonError> {
    let bad = |e: String| LessonError::BadInput(format!("image {name}: {e}"));
    let reference = Reference::parse(name)?;
    let tar = layer_tar(files).map_err(|e| bad(e.to_string()))?;
    let layer = commit_layer(store, &tar, None)?;
    let mut config = single_layer_config(
        &layer.diff_id.to_string(),
        None,
        Default::default(),
        created_by,
        None,
    );
    config.set_architecture(arch);
    Ok(write_image(store, &reference, &config, vec![layer])?)
}

/// The files and the directories above them, with zero mtimes (the same
/// files give the same layer).
fn layer_tar(files: &[(&str, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs: Vec<String> = Vec::new();
    for (path, _) in files {
        let mut at = String::new();
        for part in path
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .iter()
            .rev()
        {
            at = if at.is_empty() {
                part.to_string()
            } else {
                format!("{at}/{part}")
            };
            if !dirs.contains(&at) {
                dirs.push(at.clone());
            }
        }
    }
    for dir in ["dev", "proc", "sys", "tmp"] {
        if !dirs.iter().any(|d| d == dir) {
            dirs.push(dir.to_string());
        }
    }
    for dir in &dirs {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, dir, std::io::empty())?;
    }
    for (path, data) in files {
        let mut h = header(tar::EntryType::Regular, 0o755, data.len() as u64);
        b.append_data(&mut h, path, &data[..])?;
    }
    b.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_holds_the_files_and_their_directories() {
        let tar = layer_tar(&[("usr/bin/x", b"abc".to_vec()), ("bin/y", Vec::new())]).unwrap();
        let names: Vec<String> = tar::Archive::new(&tar[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        for want in ["usr", "usr/bin", "bin", "tmp", "usr/bin/x", "bin/y"] {
            assert!(
                names.iter().any(|n| n.trim_end_matches('/') == want),
                "{want} missing from {names:?}"
            );
        }
        assert_eq!(
            tar,
            layer_tar(&[("usr/bin/x", b"abc".to_vec()), ("bin/y", Vec::new())]).unwrap()
        );
    }
}
