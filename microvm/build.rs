//! Builds twinbox-init, the guest's PID 1, as a static executable and embeds it
//! in the library, so that `cargo build` (or `cargo install`) alone gives a
//! twinbox whose `vm run` works. The init is built by a nested cargo into its
//! own target directory under OUT_DIR (the outer build holds the lock on the
//! usual one), with glibc linked statically: the guest has no loader.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let here =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let init = here.join("init");
    println!("cargo:rerun-if-changed={}", init.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        init.join("Cargo.toml").display()
    );
    println!("cargo:rerun-if-changed=build.rs");
    let embedded = out.join("twinbox-init");
    match build_init(&init, &out) {
        Ok(built) => {
            fs::copy(&built, &embedded).expect("copy the built init into OUT_DIR");
        }
        Err(why) => {
            // an empty file: the binary still builds, and `vm run` says why it
            // has no init instead of the whole build failing
            println!(
                "cargo:warning=twinbox-init was not built ({why}); vm run will need TWINBOX_INIT"
            );
            fs::write(&embedded, b"").expect("write OUT_DIR/twinbox-init");
        }
    }
}

fn build_init(init: &std::path::Path, out: &std::path::Path) -> Result<PathBuf, String> {
    let target_dir = out.join("init-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .arg("build")
        .arg("--quiet")
        .arg("--release")
        .arg("--manifest-path")
        .arg(init.join("Cargo.toml"))
        .arg("--target")
        .arg(GUEST_TARGET)
        .arg("--target-dir")
        .arg(&target_dir)
        // the outer build's flags are not the guest's
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            ["-C", "target-feature=+crt-static", "-C", "strip=symbols"].join("\x1f"),
        )
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build of the init failed ({status}); is libc6-dev installed?"
        ));
    }
    Ok(target_dir
        .join(GUEST_TARGET)
        .join("release")
        .join("twinbox-guest-init"))
}
