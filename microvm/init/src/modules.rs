//! Loading kernel modules from the initramfs with `finit_module`, in the order
//! the host resolved (dependencies first).

use std::fs::File;
use std::os::fd::AsRawFd;

use crate::failure::Failure;

/// `finit_module` flag (Linux 6.4+): the file is compressed and the kernel
/// decompresses it itself.
const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

pub fn load_all(paths: &[String]) -> Result<(), Failure> {
    for path in paths {
        load(path)?;
    }
    Ok(())
}

fn load(path: &str) -> Result<(), Failure> {
    let what = || format!("load module {path}");
    let file = File::open(path).map_err(|e| Failure::io(what(), &e))?;
    let mut result = finit_module(&file, 0);
    if is_compressed(path) && matches!(result, Err(libc::ENOEXEC) | Err(libc::EINVAL)) {
        // The plain call rejects a compressed image; a kernel that can
        // decompress modules takes it with the flag.
        result = finit_module(&file, MODULE_INIT_COMPRESSED_FILE);
    }
    match result {
        // Already there: built in, or loaded as another module's dependency.
        Ok(()) | Err(libc::EEXIST) => Ok(()),
        Err(errno) => {
            let mut failure = Failure::io(what(), &std::io::Error::from_raw_os_error(errno));
            if is_compressed(path) {
                failure
                    .why
                    .push_str(" (compressed module: this kernel may not decompress modules)");
            }
            Err(failure)
        }
    }
}

fn is_compressed(path: &str) -> bool {
    [".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .any(|ext| path.ends_with(ext))
}

fn finit_module(file: &File, flags: libc::c_uint) -> Result<(), libc::c_int> {
    // SAFETY: finit_module reads the open file; the parameter string is a valid
    // empty C string.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            c"".as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_names() {
        assert!(is_compressed("/lib/modules/6.9/kernel/virtio_mmio.ko.xz"));
        assert!(is_compressed("a.ko.zst"));
        assert!(!is_compressed("a.ko"));
    }

    #[test]
    fn missing_module_file_names_the_path() {
        let err = load("/nonexistent/virtio.ko").unwrap_err();
        assert_eq!(
            err.to_string(),
            "load module /nonexistent/virtio.ko: No such file or directory"
        );
    }
}
