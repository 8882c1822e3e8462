//! The guest's initramfs: what to run ([`GuestSpec`], with the same image
//! config rules as `twinbox run`) and the archive the kernel unpacks.
//!
//! The kernel accepts several compressed newc archives one after the other;
//! later ones add to (and overwrite) what earlier ones unpacked. The initrd is
//! three such parts, from the slowest-changing to the per-run one:
//! 1. the image's merged layers, cached per image manifest digest in
//!    `<store>/cache/initramfs/<digest-hex>.cpio.gz`;
//! 2. `/twinbox/init` and the kernel modules asked for (with their
//!    dependencies), cached per init binary, kernel and module set;
//! 3. `/twinbox/config.json`, written for every run.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest as _, Sha256};
use twinbox_engine::container::options::RunOptions;
use twinbox_engine::container::{spec, user};
use twinbox_engine::image::Image;
use twinbox_engine::store::{atomic, Store};
use twinbox_engine::util::id::random_hex;
use twinbox_init::{GuestConfig, CONFIG_PATH, INIT_PATH};

use super::cpio::{CpioWriter, Kind, Meta};
use super::modules::ModuleIndex;
use super::{rootfs, GuestError};
use crate::host::GuestKernel;

/// Environment variable naming the init binary to use.
pub const INIT_ENV: &str = "TWINBOX_INIT";
/// Where an installed twinbox keeps the init.
pub const INSTALLED_INIT: &str = "/usr/local/lib/twinbox/twinbox-init";
/// File name of the init next to the twinbox binary.
pub const INIT_FILE_NAME: &str = "twinbox-init";
/// Where module files go in the initramfs: a directory of our own, so that a
/// `lib` symlink of a merged-/usr image is never replaced by a directory.
const GUEST_MODULES_DIR: &str = "twinbox/modules";
/// Bumped when the layout of the init part changes, so old caches are not reused.
const INIT_PART_FORMAT: &str = "twinbox-init-part-2";

/// What the guest runs and how: the guest init's configuration before the
/// module names are resolved to files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestSpec {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub workdir: String,
    pub user: String,
    pub hostname: String,
    /// Kernel module names (`virtio_mmio`); dependencies are added.
    pub modules: Vec<String>,
    /// The init prints `@@twinbox@@` marker lines around the workload.
    pub console_markers: bool,
    /// The image comes as a disk (see [`super::disk`]): the initramfs holds
    /// only the init, the modules and the configuration.
    pub root_disk: Option<twinbox_init::RootDisk>,
    /// The network card's configuration (address, route, hosts, resolv.conf).
    pub network: Option<twinbox_init::GuestNetwork>,
}

impl GuestSpec {
    /// The image's Entrypoint, Cmd, Env, WorkingDir and User combined with the
    /// run options exactly as `twinbox run` does. The hostname is the option's,
    /// else a random 12-digit hex id like a container's. Console markers are on
    /// (both twinbox's VMM and the QEMU runner read them); no modules.
    pub fn from_image(image: &Image, opts: &RunOptions) -> GuestSpec {
        let config = image.config.config().as_ref();
        let hostname = opts.hostname.clone().unwrap_or_else(|| random_hex(6));
        let user = opts
            .user
            .clone()
            .or_else(|| config.and_then(|c| c.user().clone()))
            .unwrap_or_default();
        let workdir = opts
            .workdir
            .clone()
            .or_else(|| config.and_then(|c| c.working_dir().clone()))
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into());
        GuestSpec {
            argv: spec::command_line(config, opts),
            env: spec::environment(config, opts, &hostname, home_of(&user)),
            workdir,
            user,
            hostname,
            modules: Vec::new(),
            console_markers: true,
            root_disk: None,
            network: None,
        }
    }

    /// Checks what the guest could only fail on later, with a less clear message.
    fn validate(&self) -> Result<(), GuestError> {
        if self.argv.is_empty() {
            return Err(GuestError::BadSpec(
                "no command specified: the image has no Entrypoint or Cmd, so give one after the image name".into(),
            ));
        }
        if !self.workdir.starts_with('/') {
            return Err(GuestError::BadSpec(format!(
                "working directory {:?} must be an absolute path",
                self.workdir
            )));
        }
        Ok(())
    }

    fn config(&self, module_paths: Vec<String>) -> GuestConfig {
        GuestConfig {
            argv: self.argv.clone(),
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            modules: module_paths,
            console_markers: self.console_markers,
            root_disk: self.root_disk.clone(),
            network: self.network.clone(),
        }
    }
}

/// HOME for the workload. The store (and so the image's /etc/passwd) is not at
/// hand here: root's home is /root, anyone else's / (Docker's fallback), unless
/// the image or `-e` sets HOME.
fn home_of(user: &str) -> &'static str {
    let name = user.split(':').next().unwrap_or("");
    if matches!(name, "" | "0" | "root") {
        "/root"
    } else {
        "/"
    }
}

/// A built initramfs.
#[derive(Debug, Clone)]
pub struct Initrd {
    pub bytes: Vec<u8>,
    /// The image part came from the cache (no layer was read).
    pub image_part_cached: bool,
    pub image_part_len: u64,
    pub total_len: u64,
}

/// Builds the initramfs for running `spec` from `image` on `kernel`, with the
/// init from [`init_binary`].
pub fn build_initrd(
    store: &Store,
    image: &Image,
    spec: &GuestSpec,
    kernel: &GuestKernel,
) -> Result<Initrd, GuestError> {
    build_initrd_with_init(store, image, spec, kernel, &init_binary()?)
}

/// [`build_initrd`] with the init binary given.
pub fn build_initrd_with_init(
    store: &Store,
    image: &Image,
    spec: &GuestSpec,
    kernel: &GuestKernel,
    init: &Path,
) -> Result<Initrd, GuestError> {
    spec.validate()?;
    let layers = image.lower_dirs(store);
    // The guest would find the same answer in the same files; asking here
    // gives a clear error before any VM starts.
    user::resolve(&spec.user, &layers)?;

    let cache = store.root().join("cache/initramfs");
    fs::create_dir_all(&cache).map_err(|e| GuestError::io(&cache, e))?;

    let (image_part, image_part_cached) = if spec.root_disk.is_some() {
        (Vec::new(), true)
    } else {
        let image_path = cache.join(format!("{}.cpio.gz", image.manifest_digest.hex()));
        cached(&image_path, || {
            gzip_cpio(|cpio| rootfs::write_layers(&layers, cpio).map(drop))
        })?
    };

    let init_bytes = fs::read(init).map_err(|e| GuestError::io(init, e))?;
    let module_files = resolve_modules(kernel, &spec.modules)?;
    let init_key = init_part_key(&init_bytes, kernel, &module_files);
    let init_path = cache.join(format!("init-{init_key}.cpio.gz"));
    let (init_part, _) = cached(&init_path, || init_part(&init_bytes, &module_files))?;

    let guest_modules = module_files
        .iter()
        .map(|m| format!("/{}", m.guest))
        .collect();
    let config_part = config_part(&spec.config(guest_modules))?;

    let mut bytes = image_part;
    let image_part_len = bytes.len() as u64;
    bytes.extend_from_slice(&init_part);
    bytes.extend_from_slice(&config_part);
    let total_len = bytes.len() as u64;
    Ok(Initrd {
        bytes,
        image_part_cached,
        image_part_len,
        total_len,
    })
}

/// A module file on the host and where it goes in the initramfs.
struct ModuleFile {
    host: PathBuf,
    guest: String,
}

fn resolve_modules(kernel: &GuestKernel, names: &[String]) -> Result<Vec<ModuleFile>, GuestError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let dir = kernel
        .modules_dir
        .as_ref()
        .ok_or_else(|| GuestError::NoModules {
            version: kernel.version.clone(),
            expected: Path::new(crate::host::MODULES_DIR).join(&kernel.version),
        })?;
    let index = ModuleIndex::load(dir)?;
    let files = index.resolve(names, &dir.join("modules.dep"))?;
    Ok(files
        .into_iter()
        .map(|rel| {
            let file = rel.rsplit('/').next().unwrap_or(&rel).to_string();
            ModuleFile {
                host: dir.join(&rel),
                guest: format!("{GUEST_MODULES_DIR}/{file}"),
            }
        })
        .collect())
}

/// Names the init part by everything in it: the init's bytes, the kernel and
/// each module file's path, size and change time.
fn init_part_key(init: &[u8], kernel: &GuestKernel, modules: &[ModuleFile]) -> String {
    let mut h = Sha256::new();
    h.update(INIT_PART_FORMAT);
    h.update(Sha256::digest(init));
    h.update(kernel.version.as_bytes());
    for m in modules {
        h.update([0]);
        h.update(m.host.as_os_str().as_encoded_bytes());
        if let Ok(md) = fs::metadata(&m.host) {
            h.update(md.len().to_le_bytes());
            h.update(md.ctime().to_le_bytes());
        }
    }
    hex::encode(&h.finalize()[..16])
}

/// Part 2: the root directory's mode, a console node for the kernel to open
/// before the init runs, the init itself and the modules.
fn init_part(init: &[u8], modules: &[ModuleFile]) -> Result<Vec<u8>, GuestError> {
    gzip_cpio(|cpio| {
        let w = |e| GuestError::io("initramfs", e);
        // The kernel's rootfs starts as 1777 (tmpfs); a container's root is 0755.
        cpio.dir(b".", Meta::root(0o755)).map_err(w)?;
        cpio.dir(b"dev", Meta::root(0o755)).map_err(w)?;
        cpio.special(
            b"dev/console",
            Kind::CharDevice { major: 5, minor: 1 },
            Meta::root(0o600),
        )
        .map_err(w)?;
        cpio.dir(b"twinbox", Meta::root(0o755)).map_err(w)?;
        cpio.file(relative(INIT_PATH), Meta::root(0o755), init)
            .map_err(w)?;
        if !modules.is_empty() {
            cpio.dir(GUEST_MODULES_DIR.as_bytes(), Meta::root(0o755))
                .map_err(w)?;
        }
        for m in modules {
            let mut file = fs::File::open(&m.host).map_err(|e| GuestError::io(&m.host, e))?;
            let len = file
                .metadata()
                .map_err(|e| GuestError::io(&m.host, e))?
                .len();
            cpio.file_from(m.guest.as_bytes(), Meta::root(0o644), len, &mut file)
                .map_err(|e| GuestError::io(&m.host, e))?;
        }
        Ok(())
    })
}

/// Part 3: the run's configuration.
fn config_part(config: &GuestConfig) -> Result<Vec<u8>, GuestError> {
    let json = serde_json::to_vec_pretty(config).expect("plain data serializes");
    gzip_cpio(|cpio| {
        let w = |e| GuestError::io("initramfs", e);
        cpio.dir(b"twinbox", Meta::root(0o755)).map_err(w)?;
        cpio.file(relative(CONFIG_PATH), Meta::root(0o644), &json)
            .map_err(w)
    })
}

fn relative(guest_path: &str) -> &[u8] {
    guest_path.trim_start_matches('/').as_bytes()
}

/// One gzip-compressed newc archive holding what `fill` writes. A fast level:
/// the kernel decompresses it on every boot, and its size hardly matters.
fn gzip_cpio(
    fill: impl FnOnce(&mut CpioWriter<GzEncoder<Vec<u8>>>) -> Result<(), GuestError>,
) -> Result<Vec<u8>, GuestError> {
    let mut cpio = CpioWriter::new(GzEncoder::new(Vec::new(), Compression::fast()));
    fill(&mut cpio)?;
    let gz = cpio.finish().map_err(|e| GuestError::io("initramfs", e))?;
    gz.finish().map_err(|e| GuestError::io("initramfs", e))
}

/// The cached file's bytes (true), or `build`'s, stored atomically (false).
fn cached(
    path: &Path,
    build: impl FnOnce() -> Result<Vec<u8>, GuestError>,
) -> Result<(Vec<u8>, bool), GuestError> {
    match fs::read(path) {
        Ok(bytes) => return Ok((bytes, true)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(GuestError::io(path, e)),
    }
    let bytes = build()?;
    atomic::write_atomic(path, &bytes)?;
    Ok((bytes, false))
}

/// The static init the build embedded (microvm/build.rs); empty when the build
/// could not make one.
static EMBEDDED_INIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/twinbox-init"));

/// The twinbox-init binary: `$TWINBOX_INIT`, else the one embedded at build
/// time (written once to a file named by its digest), else `twinbox-init` next
/// to the running executable (or next to its `deps` directory, for cargo's test
/// binaries), else [`INSTALLED_INIT`]. It must be statically linked.
pub fn init_binary() -> Result<PathBuf, GuestError> {
    if let Some(path) = std::env::var_os(INIT_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(GuestError::NoInit {
                looked: format!("{INIT_ENV}={}", path.display()),
            });
        }
        return check_static(path);
    }
    if !EMBEDDED_INIT.is_empty() {
        return embedded_init_file();
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        candidates.push(dir.join(INIT_FILE_NAME));
        if dir.file_name().is_some_and(|n| n == "deps") {
            if let Some(up) = dir.parent() {
                candidates.push(up.join(INIT_FILE_NAME));
            }
        }
    }
    candidates.push(PathBuf::from(INSTALLED_INIT));
    match candidates.iter().find(|p| p.is_file()) {
        Some(found) => check_static(found.clone()),
        None => Err(GuestError::NoInit {
            looked: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The embedded init as a file: `<tmp>/twinbox-init-<digest>`, written with a
/// temp file and a rename, and used only when its content is the embedded one
/// (a file of that name made by anybody else is replaced, never trusted).
fn embedded_init_file() -> Result<PathBuf, GuestError> {
    let digest = hex::encode(Sha256::digest(EMBEDDED_INIT));
    let path = std::env::temp_dir().join(format!("twinbox-init-{}", &digest[..16]));
    let current = fs::read(&path).is_ok_and(|d| d == EMBEDDED_INIT);
    if !current {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o755)
                .open(&tmp)
                .map_err(|e| GuestError::io(&tmp, e))?;
            f.write_all(EMBEDDED_INIT)
                .and_then(|_| f.sync_all())
                .map_err(|e| GuestError::io(&tmp, e))?;
        }
        fs::rename(&tmp, &path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            GuestError::io(&path, e)
        })?;
    }
    check_static(path)
}

/// Refuses a dynamically linked ELF file (one with a PT_INTERP program header).
fn check_static(path: PathBuf) -> Result<PathBuf, GuestError> {
    let mut data = Vec::new();
    fs::File::open(&path)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut data))
        .map_err(|e| GuestError::io(&path, e))?;
    if has_interpreter(&data)? {
        return Err(GuestError::InitNotStatic(path));
    }
    Ok(path)
}

/// Whether a 64-bit little-endian ELF header + program headers name a
/// program interpreter. Not an ELF file at all is an error.
fn has_interpreter(head: &[u8]) -> Result<bool, GuestError> {
    const PT_INTERP: u32 = 3;
    let not_elf = || GuestError::BadSpec("twinbox-init is not a 64-bit ELF executable".into());
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return Err(not_elf());
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(head[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let Some(p_type) = head.get(at..at + 4) else {
            return Err(not_elf());
        };
        if u32::from_le_bytes(p_type.try_into().expect("4 bytes")) == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::cpio::read_entries;
    use crate::host::KernelFormat;
    use flate2::read::MultiGzDecoder;

    #[test]
    fn the_build_embeds_a_static_init() {
        assert!(
            !EMBEDDED_INIT.is_empty(),
            "microvm/build.rs did not build twinbox-init (see its cargo warning)"
        );
        assert!(
            !has_interpreter(&EMBEDDED_INIT[..4096]).unwrap(),
            "the embedded init is dynamically linked"
        );
        let path = embedded_init_file().unwrap();
        assert_eq!(fs::read(&path).unwrap(), EMBEDDED_INIT);
        // a second call reuses the file
        assert_eq!(embedded_init_file().unwrap(), path);
    }
    use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};
    use twinbox_engine::store::Digest;

    fn image_with(config: oci_spec::image::Config, layers: usize) -> Image {
        let digest = |n: u8| Digest::parse(&format!("sha256:{}", hex::encode([n; 32]))).unwrap();
        Image {
            names: vec!["test:latest".into()],
            manifest_digest: digest(1),
            id: digest(2),
            config: ImageConfigurationBuilder::default()
                .config(config)
                .build()
                .unwrap(),
            layers: (0..layers)
                .map(|i| twinbox_engine::image::LayerInfo {
                    blob: digest(10 + i as u8),
                    blob_size: 0,
                    media_type: String::new(),
                    diff_id: digest(20 + i as u8),
                    chain_id: digest(30 + i as u8),
                })
                .collect(),
        }
    }

    fn app_config() -> oci_spec::image::Config {
        ConfigBuilder::default()
            .entrypoint(vec!["/bin/app".to_string()])
            .cmd(vec!["serve".to_string()])
            .env(vec![
                "PATH=/opt/bin:/bin".to_string(),
                "MODE=image".to_string(),
            ])
            .working_dir("/srv".to_string())
            .build()
            .unwrap()
    }

    #[test]
    fn spec_follows_twinbox_run_rules() {
        let image = image_with(app_config(), 1);
        let opts = RunOptions {
            env: vec!["MODE=cli".into()],
            hostname: Some("vm1".into()),
            cmd: vec!["debug".into()],
            ..Default::default()
        };
        let spec = GuestSpec::from_image(&image, &opts);
        assert_eq!(spec.argv, ["/bin/app", "debug"]);
        assert_eq!(spec.workdir, "/srv");
        assert_eq!(spec.hostname, "vm1");
        assert!(spec.env.contains(&"MODE=cli".to_string()), "{:?}", spec.env);
        assert!(spec.env.contains(&"PATH=/opt/bin:/bin".to_string()));
        assert!(spec.env.contains(&"HOSTNAME=vm1".to_string()));
        assert!(spec.env.contains(&"HOME=/root".to_string()));
        assert!(spec.console_markers);
        let other = GuestSpec::from_image(
            &image,
            &RunOptions {
                user: Some("1000".into()),
                workdir: Some("/tmp".into()),
                ..Default::default()
            },
        );
        assert_eq!(other.workdir, "/tmp");
        assert_eq!(other.hostname.len(), 12);
        assert!(other.env.contains(&"HOME=/".to_string()));
    }

    fn kernel(modules_dir: Option<PathBuf>) -> GuestKernel {
        GuestKernel {
            path: PathBuf::from("/boot/vmlinuz-9.9.9-test"),
            version: "9.9.9-test".into(),
            modules_dir,
            format: KernelFormat::BzImage,
        }
    }

    /// A store with a two-layer image unpacked under layers/, and a fake init.
    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        image: Image,
        init: PathBuf,
        modules: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let image = image_with(app_config(), 2);
        let lowers = image.lower_dirs(&store);
        let (top, base) = (&lowers[0], &lowers[1]);
        fs::create_dir_all(base.join("etc")).unwrap();
        fs::create_dir_all(base.join("bin")).unwrap();
        fs::write(base.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        fs::write(base.join("bin/app"), "base app").unwrap();
        fs::create_dir_all(top.join("bin")).unwrap();
        fs::write(top.join("bin/app"), "top app").unwrap();
        // an ELF header with no program headers: "static"
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let init = dir.path().join("twinbox-init");
        fs::write(&init, &elf).unwrap();
        let modules = dir.path().join("modules");
        fs::create_dir_all(modules.join("kernel/virtio")).unwrap();
        fs::write(
            modules.join("modules.dep"),
            "kernel/virtio/virtio_mmio.ko: kernel/virtio/virtio.ko\nkernel/virtio/virtio.ko:\n",
        )
        .unwrap();
        fs::write(modules.join("kernel/virtio/virtio.ko"), "virtio module").unwrap();
        fs::write(modules.join("kernel/virtio/virtio_mmio.ko"), "mmio module").unwrap();
        Fixture {
            _dir: dir,
            store,
            image,
            init,
            modules,
        }
    }

    fn unpack(initrd: &Initrd) -> Vec<crate::guest::cpio::ReadEntry> {
        let mut cpio = Vec::new();
        MultiGzDecoder::new(&initrd.bytes[..])
            .read_to_end(&mut cpio)
            .unwrap();
        read_entries(&cpio)
    }

    #[test]
    fn initrd_has_rootfs_init_modules_and_config() {
        let f = fixture();
        let mut spec = GuestSpec::from_image(&f.image, &RunOptions::default());
        spec.modules = vec!["virtio-mmio".into()];
        let k = kernel(Some(f.modules.clone()));
        let first = build_initrd_with_init(&f.store, &f.image, &spec, &k, &f.init).unwrap();
        assert!(!first.image_part_cached);
        assert_eq!(first.total_len, first.bytes.len() as u64);
        let entries = unpack(&first);
        // later parts overwrite earlier ones: look up the last entry of a name
        let last = |n: &str| entries.iter().rev().find(|e| e.name == n);
        assert_eq!(last("bin/app").unwrap().data, b"top app");
        assert_eq!(last("dev/console").unwrap().rdev, (5, 1));
        assert_eq!(last("twinbox/init").unwrap().mode, 0o100755);
        assert_eq!(
            last("twinbox/modules/virtio.ko").unwrap().data,
            b"virtio module"
        );
        let config: GuestConfig =
            serde_json::from_slice(&last("twinbox/config.json").unwrap().data).unwrap();
        assert_eq!(config.argv, ["/bin/app", "serve"]);
        assert_eq!(
            config.modules,
            [
                "/twinbox/modules/virtio.ko",
                "/twinbox/modules/virtio_mmio.ko"
            ]
        );
        assert!(config.console_markers);

        // The image part is reused; a new config still lands in the initrd.
        spec.argv = vec!["/bin/other".into()];
        let second = build_initrd_with_init(&f.store, &f.image, &spec, &k, &f.init).unwrap();
        assert!(second.image_part_cached);
        assert_eq!(second.image_part_len, first.image_part_len);
        assert_eq!(
            second.bytes[..second.image_part_len as usize],
            first.bytes[..first.image_part_len as usize]
        );
        let entries = unpack(&second);
        let config = entries
            .iter()
            .rev()
            .find(|e| e.name == "twinbox/config.json")
            .unwrap();
        assert!(String::from_utf8_lossy(&config.data).contains("/bin/other"));
        let cached = f
            .store
            .root()
            .join("cache/initramfs")
            .join(format!("{}.cpio.gz", f.image.manifest_digest.hex()));
        assert!(cached.is_file());
    }

    #[test]
    fn bad_specs_are_refused_before_building() {
        let f = fixture();
        let k = kernel(None);
        let mut spec = GuestSpec::from_image(&f.image, &RunOptions::default());
        spec.argv.clear();
        let err = build_initrd_with_init(&f.store, &f.image, &spec, &k, &f.init).unwrap_err();
        assert!(err.to_string().starts_with("no command specified"), "{err}");

        let mut spec = GuestSpec::from_image(&f.image, &RunOptions::default());
        spec.workdir = "relative".into();
        let err = build_initrd_with_init(&f.store, &f.image, &spec, &k, &f.init).unwrap_err();
        assert!(err.to_string().contains("absolute"), "{err}");

        let mut spec = GuestSpec::from_image(&f.image, &RunOptions::default());
        spec.user = "alice".into();
        let err = build_initrd_with_init(&f.store, &f.image, &spec, &k, &f.init).unwrap_err();
        assert!(err.to_string().contains("alice"), "{err}");

        let mut spec = GuestSpec::from_image(&f.image, &RunOptions::default());
        spec.modules = vec!["virtio_mmio".into()];
        let err = build_initrd_with_init(&f.store, &f.image, &spec, &k, &f.init).unwrap_err();
        assert!(matches!(err, GuestError::NoModules { .. }), "{err}");
        let k = kernel(Some(f.modules.clone()));
        spec.modules = vec!["nonexistent_driver".into()];
        let err = build_initrd_with_init(&f.store, &f.image, &spec, &k, &f.init).unwrap_err();
        assert!(matches!(err, GuestError::ModuleNotFound { .. }), "{err}");
    }

    #[test]
    fn dynamic_executables_are_not_an_init() {
        // This test binary is dynamically linked (cargo's default).
        let me = std::env::current_exe().unwrap();
        let err = check_static(me).unwrap_err();
        assert!(matches!(err, GuestError::InitNotStatic(_)), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("init");
        fs::write(&text, "#!/bin/sh\n").unwrap();
        assert!(check_static(text).is_err());
    }
}
