//! registry: images travel by registry. Push an image to a registry on this
//! machine's loopback, pull it into a second, empty store (a classmate's
//! machine), and run it there.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use twinbox_engine::image::{remove, Image};
use twinbox_engine::registry::pull::{pull, PullOptions, Pulled};
use twinbox_engine::registry::push::{push, PushOptions, Pushed};
use twinbox_engine::registry::{ConnectOptions, NoProgress};
use twinbox_engine::store::Store;

use super::{three_acts, Lesson};
use crate::container::Detached;
use crate::context::{cmd_opts, Context, BUSYBOX, RUN_TIMEOUT};
use crate::measure::disk::{image_footprint, ImageFootprint};
use crate::report::{format_bytes, LessonReport, Measured, Side, Step, Table};
use crate::shell;
use crate::LessonError;

pub struct Registry;

const REGISTRY_BINARY: &str = "docker-registry";

impl Lesson for Registry {
    fn name(&self) -> &'static str {
        "registry"
    }

    fn title(&self) -> &'static str {
        "images are exchanged through registries"
    }

    fn summary(&self) -> &'static str {
        "push to a local OCI registry, pull into an empty store, run it there"
    }

    fn explanation(&self) -> &'static [&'static str] {
        &[
            "A registry is a web server that stores images: their manifests (the list of \
             layers), configs and layer blobs, all addressed by their sha256 digest. \
             `push` uploads the blobs the registry does not have yet and then the manifest; \
             `pull` downloads the manifest and every layer the local store lacks. Because \
             everything is named by its digest, the image that arrives is bit for bit the \
             one that was sent.",
            "This lesson starts a real registry (the CNCF distribution registry, Debian's \
             docker-registry package) on this machine's loopback interface, pushes the \
             busybox image to it, pulls it into a second, empty store standing in for \
             another machine, and runs a container from it there.",
            "It has no VM half: a VM image is usually a disk file, copied whole.",
        ]
    }

    fn uses_vm(&self) -> bool {
        false
    }

    fn run(&self, ctx: &Context, report: &mut LessonReport) -> Result<(), LessonError> {
        three_acts(ctx, report, measure, present, explain)
    }
}

/// The image as sent and as received, and the run on the receiving side.
struct Measurements {
    image: Image,
    sent: ImageFootprint,
    pushed: Pushed,
    pulled: Pulled,
    /// The pulled image's layers are the sent ones (by diff id).
    same_layers: bool,
    code: Option<i32>,
    ran: Measured<i32>,
    output: String,
}

/// Act one: a registry on loopback, push, pull into an empty store, run
/// from there.
fn measure(ctx: &Context, report: &mut LessonReport) -> Result<Measurements, LessonError> {
    let image = ctx.image(BUSYBOX)?;
    let work = TempDir::new()?;
    let server = LocalRegistry::start(&work.path)?;
    ctx.host_step(
        report,
        &format!("{REGISTRY_BINARY} serve {}", server.config.display()),
        &format!(
            "(listening on {}; storage in {})\n",
            server.host(),
            work.path.join("data").display()
        ),
    );
    let target = format!("{}/lessons/busybox:v1", server.host());
    let connect = ConnectOptions {
        read_timeout: Duration::from_secs(30),
        ..ConnectOptions::default()
    };

    remove::tag(&ctx.store, BUSYBOX, &target)?;
    ctx.host_step(report, &format!("twinbox tag {BUSYBOX} {target}"), "");
    let pushed = push(
        &ctx.store,
        &target,
        &PushOptions {
            connect: connect.clone(),
        },
        &NoProgress,
    );
    let _ = remove::remove(&ctx.store, &target, false, &twinbox_engine::system::InUse);
    let pushed = pushed.map_err(LessonError::RegistryClient)?;
    ctx.host_step(
        report,
        &format!("twinbox push {target}"),
        &format!(
            "{} blob(s) uploaded, {} already there\nv1: digest: {} size: {}\n",
            pushed.uploaded, pushed.already_present, pushed.manifest_digest, pushed.manifest_size
        ),
    );

    let other_root = work.path.join("classmate");
    let other = Store::open(&other_root)?;
    let pulled = pull(
        &other,
        &target,
        &PullOptions {
            platform: None,
            connect,
        },
        &NoProgress,
    )
    .map_err(LessonError::RegistryClient)?;
    let command = format!(
        "TWINBOX_ROOT={} twinbox pull {target}",
        other_root.display()
    );
    ctx.host_step(
        report,
        &command,
        &format!(
            "{} layer(s) downloaded, {} already present\nDigest: {}\n",
            pulled.downloaded, pulled.already_present, pulled.manifest_digest
        ),
    );

    // run it from the other store
    let opts = cmd_opts(vec!["echo".into(), "hello from the pulled image".into()]);
    let shown = format!(
        "TWINBOX_ROOT={} {}",
        other_root.display(),
        shell::container_run(
            &target,
            &twinbox_engine::container::RunOptions {
                auto_remove: true,
                ..opts.clone()
            },
            false
        )
    );
    ctx.show(Side::Container, &shown);
    let mut d = Detached::start(&other, &target, &opts, &ctx.settings.supervisor_exe)?;
    let mut out = std::io::stdout();
    let (code, _) = d.wait(RUN_TIMEOUT, &mut out)?;
    let output = d.output();
    d.remove()?;
    report.steps.push(Step {
        side: Side::Container,
        command: shown,
        output: output.clone(),
        exit_code: code,
        error: None,
        duration_ms: None,
    });

    let same_layers = pulled
        .image
        .layers
        .iter()
        .map(|l| &l.diff_id)
        .eq(image.layers.iter().map(|l| &l.diff_id));
    let ran: Measured<i32> = Measured::from_option(
        code,
        "the container from the pulled image reported no exit code",
    );
    report.check("running the pulled image", &ran);
    let sent = image_footprint(&ctx.store, &image);
    drop(server);
    Ok(Measurements {
        image,
        sent,
        pushed,
        pulled,
        same_layers,
        code,
        ran,
        output,
    })
}

/// Act two: the image on both sides, and the run.
fn present(m: &Measurements, report: &mut LessonReport) {
    let Measurements {
        image,
        sent,
        pushed,
        pulled,
        ran,
        output,
        ..
    } = m;
    let mut t = Table::new(
        "the image, sent and received",
        &["", "this store (sender)", "the other store (receiver)"],
    );
    t.row(vec![
        "manifest digest".into(),
        pushed.manifest_digest.to_string().into(),
        pulled.manifest_digest.to_string().into(),
    ]);
    t.row(vec![
        "image id (config digest)".into(),
        image.id.to_string().into(),
        pulled.image.id.to_string().into(),
    ]);
    t.row(vec![
        "layers".into(),
        format!(
            "{} ({} compressed)",
            image.layers.len(),
            format_bytes(sent.layers.iter().map(|l| l.blob).sum())
        )
        .into(),
        format!(
            "{} ({} downloaded)",
            pulled.image.layers.len(),
            pulled.downloaded
        )
        .into(),
    ]);
    t.row(vec![
        "runs".into(),
        "-".into(),
        ran.as_ref()
            .map(|c| format!("exit code {c}: {}", output.trim()))
            .into(),
    ]);
    report.tables.push(t);
}

/// Act three: the same image, bit for bit; caveat and facts.
fn explain(m: &Measurements, report: &mut LessonReport) {
    let Measurements {
        pushed,
        pulled,
        same_layers,
        code,
        ..
    } = m;
    let same = pushed.manifest_digest == pulled.manifest_digest;
    report.findings.push(format!(
        "The push sent {} blob(s) and a manifest with digest {}; the pull into the empty store downloaded {} layer(s) and got the manifest with digest {}: {}. The receiver then ran a container from it without ever seeing the sender's store.",
        pushed.uploaded,
        pushed.manifest_digest.short(),
        pulled.downloaded,
        pulled.manifest_digest.short(),
        if same && *same_layers { "the same image, bit for bit" } else { "unexpectedly, not the same image" }
    ));
    report.caveats.push("The registry here listens on 127.0.0.1 with plain HTTP and no login, which is only safe on loopback; a shared registry needs TLS and authentication (`twinbox login`).".into());
    report.fact(
        "push",
        json!({"digest": pushed.manifest_digest.to_string(), "uploaded": pushed.uploaded, "already_present": pushed.already_present}),
    );
    report.fact(
        "pull",
        json!({"digest": pulled.manifest_digest.to_string(), "downloaded": pulled.downloaded, "image_id": pulled.image.id.to_string()}),
    );
    report.fact("same_image", same && *same_layers);
    report.fact("run_exit_code", code);
}

/// A directory removed when the lesson ends, whatever happens.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> Result<TempDir, LessonError> {
        let path = std::env::temp_dir().join(format!(
            "twinbox-lesson-registry-{}",
            twinbox_engine::util::id::random_hex(4)
        ));
        std::fs::create_dir_all(&path)
            .map_err(|e| LessonError::io(format!("creating {}", path.display()), e))?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `docker-registry serve` on a free loopback port; killed on drop.
struct LocalRegistry {
    child: Child,
    port: u16,
    config: PathBuf,
}

impl LocalRegistry {
    fn start(dir: &Path) -> Result<LocalRegistry, LessonError> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| LessonError::io("finding a free loopback port", e))?;
        let config = dir.join("config.yml");
        let yaml = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        );
        std::fs::write(&config, yaml)
            .map_err(|e| LessonError::io(format!("writing {}", config.display()), e))?;
        let log = std::fs::File::create(dir.join("registry.log"))
            .map_err(|e| LessonError::io("creating the registry log", e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| LessonError::io("creating the registry log", e))?;
        let child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| {
                LessonError::Registry(format!(
                    "cannot start {REGISTRY_BINARY} ({e}): install it with `apt-get install docker-registry` (scripts/install-deps.sh does)"
                ))
            })?;
        let mut reg = LocalRegistry {
            child,
            port,
            config,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect_timeout(
                &([127, 0, 0, 1], port).into(),
                Duration::from_millis(200),
            )
            .is_ok()
            {
                return Ok(reg);
            }
            if let Ok(Some(status)) = reg.child.try_wait() {
                let log = std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default();
                return Err(LessonError::Registry(format!(
                    "{REGISTRY_BINARY} exited ({status}): {}",
                    log.trim()
                )));
            }
            if Instant::now() >= deadline {
                return Err(LessonError::Registry(format!(
                    "{REGISTRY_BINARY} did not listen on 127.0.0.1:{port} within 20 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
