//! The build step the image lessons share (dockerfile, exercise): a build
//! context written to a private directory, `twinbox build` shown as typed,
//! its progress shown live and recorded as a step.

use std::path::{Path, PathBuf};
use std::time::Instant;

use twinbox_engine::build::progress::Recorder;
use twinbox_engine::build::{self, BuildOptions};
use twinbox_engine::network::NetworkMode;

use super::Context;
use crate::report::{LessonReport, Side, Step};
use crate::LessonError;

/// One `twinbox build` that finished.
#[derive(Debug, Clone)]
pub struct Built {
    pub ms: f64,
    /// Layer steps run or reused, and how many came from the cache.
    pub steps: usize,
    pub cached: usize,
    /// The build's progress lines, as BuildKit prints them.
    pub lines: Vec<String>,
}

/// A private directory holding a build context, removed when dropped.
pub struct BuildDir {
    pub path: PathBuf,
}

impl BuildDir {
    /// A fresh directory with `files`: (name, content, mode).
    pub fn new(what: &str, files: &[(&str, &str, u32)]) -> Result<BuildDir, LessonError> {
        let path = std::env::temp_dir().join(format!(
            "twinbox-lesson-{what}-{}",
            twinbox_engine::util::id::random_hex(6)
        ));
        std::fs::create_dir(&path)
            .map_err(|e| LessonError::io(format!("mkdir {}", path.display()), e))?;
        let dir = BuildDir { path };
        for (name, text, mode) in files {
            dir.write(name, text, *mode)?;
        }
        Ok(dir)
    }

    /// Writes (or rewrites) one file of the context.
    pub fn write(&self, name: &str, text: &str, mode: u32) -> Result<(), LessonError> {
        use std::os::unix::fs::PermissionsExt;
        let p = self.path.join(name);
        std::fs::write(&p, text)
            .map_err(|e| LessonError::io(format!("writing {}", p.display()), e))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .map_err(|e| LessonError::io(format!("chmod {}", p.display()), e))
    }
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

impl Context {
    /// `twinbox build [--no-cache] --network none -t TAG .` in `dir` with the
    /// Dockerfile text given: shown, run, its progress shown, recorded.
    pub fn build_image(
        &self,
        report: &mut LessonReport,
        dir: &Path,
        dockerfile: &str,
        tag: &str,
        no_cache: bool,
    ) -> Result<Built, String> {
        let command = format!(
            "twinbox build{} --network none -t {tag} .",
            if no_cache { " --no-cache" } else { "" }
        );
        self.show(Side::Host, &command);
        let opts = BuildOptions {
            context: Some(dir.to_path_buf()),
            dockerfile: dockerfile.to_string(),
            dockerfile_path: Some(dir.join("Dockerfile")),
            dockerfile_name: "Dockerfile".into(),
            tags: vec![tag.into()],
            no_cache,
            network: Some(NetworkMode::None),
            ..Default::default()
        };
        let mut rec = Recorder::default();
        let t0 = Instant::now();
        let result = build::build(&self.store, &opts, &mut rec);
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        let output: String = rec.lines.iter().map(|l| format!("{l}\n")).collect();
        let error = result.as_ref().err().map(|e| e.to_string());
        self.record(report, Step::ran(Side::Host, command, output, error, ms));
        result
            .map(|r| Built {
                ms,
                steps: r.steps,
                cached: r.cached,
                lines: rec.lines,
            })
            .map_err(|e| e.to_string())
    }
}
