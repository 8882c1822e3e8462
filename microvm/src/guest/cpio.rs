//! A writer for "newc" cpio archives, the format the Linux kernel unpacks as
//! its initramfs (Documentation/driver-api/early-userspace/buffer-format.rst).
//!
//! Each entry is a 110-byte ASCII header (`070701` and 13 eight-digit hex
//! fields), the NUL-terminated name padded to 4 bytes, then the data padded to
//! 4 bytes; `TRAILER!!!` ends the archive. Every mtime is 0 so the same input
//! gives the same bytes. Hard links are written as separate copies (nlink 1):
//! the kernel then never has to match inode numbers across archives.

use std::io::{self, Read, Write};

const MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";

/// What an entry is, with what only that kind carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    CharDevice { major: u32, minor: u32 },
    BlockDevice { major: u32, minor: u32 },
    Fifo,
}

impl Kind {
    fn type_bits(self) -> u32 {
        match self {
            Kind::File => libc::S_IFREG,
            Kind::Dir => libc::S_IFDIR,
            Kind::Symlink => libc::S_IFLNK,
            Kind::CharDevice { .. } => libc::S_IFCHR,
            Kind::BlockDevice { .. } => libc::S_IFBLK,
            Kind::Fifo => libc::S_IFIFO,
        }
    }
}

/// Owner and permission bits of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits, setuid/setgid/sticky included (`0o7777` at most).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Meta {
    /// Owned by root.
    pub const fn root(mode: u32) -> Self {
        Meta {
            mode,
            uid: 0,
            gid: 0,
        }
    }
}

/// Streams entries into `out`.
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    offset: u64,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            next_ino: 1,
            offset: 0,
        }
    }

    pub fn dir(&mut self, path: &[u8], meta: Meta) -> io::Result<()> {
        self.header(path, Kind::Dir, meta, 0)
    }

    pub fn file(&mut self, path: &[u8], meta: Meta, data: &[u8]) -> io::Result<()> {
        self.file_from(path, meta, data.len() as u64, &mut &data[..])
    }

    /// A regular file of `size` bytes read from `data`; fails when `data`
    /// ends early (the file shrank while being packed).
    pub fn file_from(
        &mut self,
        path: &[u8],
        meta: Meta,
        size: u64,
        data: &mut impl Read,
    ) -> io::Result<()> {
        if size > u64::from(u32::MAX) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: {size} bytes is more than a cpio entry can hold (4 GiB)",
                    String::from_utf8_lossy(path)
                ),
            ));
        }
        self.header(path, Kind::File, meta, size as u32)?;
        let copied = io::copy(&mut data.take(size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: expected {size} bytes, read {copied}: did it change while packing?",
                    String::from_utf8_lossy(path)
                ),
            ));
        }
        self.offset += size;
        self.pad()
    }

    pub fn symlink(&mut self, path: &[u8], target: &[u8], meta: Meta) -> io::Result<()> {
        self.header(path, Kind::Symlink, meta, target.len() as u32)?;
        self.out.write_all(target)?;
        self.offset += target.len() as u64;
        self.pad()
    }

    /// Device nodes and FIFOs: entries without data.
    pub fn special(&mut self, path: &[u8], kind: Kind, meta: Meta) -> io::Result<()> {
        match kind {
            Kind::CharDevice { .. } | Kind::BlockDevice { .. } | Kind::Fifo => {
                self.header(path, kind, meta, 0)
            }
            other => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{other:?} is not a special file"),
            )),
        }
    }

    /// Writes the trailer and hands back the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.header_raw(TRAILER.as_bytes(), 0, Meta::root(0), 1, 0, (0, 0))?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn header(&mut self, path: &[u8], kind: Kind, meta: Meta, size: u32) -> io::Result<()> {
        check_path(path)?;
        let nlink = if kind == Kind::Dir { 2 } else { 1 };
        let rdev = match kind {
            Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } => {
                (major, minor)
            }
            _ => (0, 0),
        };
        let mode = kind.type_bits() | (meta.mode & 0o7777);
        self.header_raw(path, mode, meta, nlink, size, rdev)
    }

    fn header_raw(
        &mut self,
        name: &[u8],
        mode: u32,
        meta: Meta,
        nlink: u32,
        size: u32,
        (rdev_major, rdev_minor): (u32, u32),
    ) -> io::Result<()> {
        let ino = self.next_ino;
        self.next_ino += 1;
        let fields = [
            ino,
            mode,
            meta.uid,
            meta.gid,
            nlink,
            0, // mtime: fixed for reproducible archives
            size,
            0, // dev major/minor: of the file system the entry came from
            0,
            rdev_major,
            rdev_minor,
            name.len() as u32 + 1, // the NUL counts
            0,                     // check: only used by the "070702" format
        ];
        let mut head = Vec::with_capacity(110 + name.len() + 4);
        head.extend_from_slice(MAGIC);
        for f in fields {
            head.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        head.extend_from_slice(name);
        head.push(0);
        self.out.write_all(&head)?;
        self.offset += head.len() as u64;
        self.pad()
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.offset % 4) as usize) % 4;
        self.out.write_all(&[0u8; 3][..n])?;
        self.offset += n as u64;
        Ok(())
    }
}

/// Names are relative ("dev/console"), non-empty, without NUL bytes, as the
/// kernel expects them.
fn check_path(path: &[u8]) -> io::Result<()> {
    let bad = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cpio entry {:?} {why}", String::from_utf8_lossy(path)),
        ))
    };
    if path.is_empty() {
        return bad("has an empty name");
    }
    if path[0] == b'/' {
        return bad("must be relative");
    }
    if path.contains(&0) {
        return bad("contains a NUL byte");
    }
    if path == TRAILER.as_bytes() {
        return bad("is the end-of-archive name");
    }
    Ok(())
}

/// One entry read back from an archive (tests only).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEntry {
    pub name: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: (u32, u32),
    pub data: Vec<u8>,
}

/// Parses a newc archive (several concatenated ones, too); stops at the end
/// of the bytes. Trailers are skipped.
#[cfg(test)]
pub fn read_entries(mut bytes: &[u8]) -> Vec<ReadEntry> {
    let mut out = Vec::new();
    let start_len = bytes.len();
    let align = |b: &[u8], total: usize| -> usize { (4 - ((total - b.len()) % 4)) % 4 };
    while bytes.len() >= 110 {
        if bytes[0] == 0 {
            bytes = &bytes[1..]; // padding between archives
            continue;
        }
        assert_eq!(&bytes[..6], MAGIC, "bad magic");
        let field = |i: usize| {
            let s = std::str::from_utf8(&bytes[6 + i * 8..14 + i * 8]).unwrap();
            u32::from_str_radix(s, 16).unwrap()
        };
        let (mode, uid, gid, size) = (field(1), field(2), field(3), field(6) as usize);
        let rdev = (field(9), field(10));
        let namesize = field(11) as usize;
        let name = String::from_utf8(bytes[110..110 + namesize - 1].to_vec()).unwrap();
        bytes = &bytes[110 + namesize..];
        bytes = &bytes[align(bytes, start_len)..];
        let data = bytes[..size].to_vec();
        bytes = &bytes[size..];
        bytes = &bytes[align(bytes, start_len)..];
        if name != TRAILER {
            out.push(ReadEntry {
                name,
                mode,
                uid,
                gid,
                rdev,
                data,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::{Command, Stdio};

    fn sample() -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new());
        w.dir(b"etc", Meta::root(0o755)).unwrap();
        w.file(
            b"etc/hostname",
            Meta {
                mode: 0o644,
                uid: 1000,
                gid: 50,
            },
            b"box\n",
        )
        .unwrap();
        w.file(b"etc/empty", Meta::root(0o600), b"").unwrap();
        w.symlink(b"etc/link", b"hostname", Meta::root(0o777))
            .unwrap();
        w.dir(b"dev", Meta::root(0o755)).unwrap();
        w.special(
            b"dev/console",
            Kind::CharDevice { major: 5, minor: 1 },
            Meta::root(0o600),
        )
        .unwrap();
        w.special(
            b"dev/loop0",
            Kind::BlockDevice { major: 7, minor: 0 },
            Meta::root(0o660),
        )
        .unwrap();
        w.special(b"dev/fifo", Kind::Fifo, Meta::root(0o644))
            .unwrap();
        w.file(b"tmp-sticky", Meta::root(0o1777), b"abcde").unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn layout_is_aligned_and_terminated() {
        let bytes = sample();
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.starts_with(b"070701"));
        // ino 1, a directory with mode 0755
        assert_eq!(&bytes[6..22], b"00000001000041ed");
        let trailer = bytes
            .windows(TRAILER.len())
            .rposition(|w| w == TRAILER.as_bytes())
            .unwrap();
        assert!(bytes[trailer + TRAILER.len()..].iter().all(|&b| b == 0));
    }

    #[test]
    fn entries_read_back() {
        let entries = read_entries(&sample());
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc",
                "etc/hostname",
                "etc/empty",
                "etc/link",
                "dev",
                "dev/console",
                "dev/loop0",
                "dev/fifo",
                "tmp-sticky"
            ]
        );
        let host = &entries[1];
        assert_eq!((host.mode, host.uid, host.gid), (0o100644, 1000, 50));
        assert_eq!(host.data, b"box\n");
        assert_eq!(entries[3].mode, 0o120777);
        assert_eq!(entries[3].data, b"hostname");
        assert_eq!(entries[5].mode, 0o020600);
        assert_eq!(entries[5].rdev, (5, 1));
        assert_eq!(entries[6].mode, 0o060660);
        assert_eq!(entries[6].rdev, (7, 0));
        assert_eq!(entries[7].mode, 0o010644);
        assert_eq!(entries[8].mode, 0o101777);
        assert_eq!(entries[8].data, b"abcde");
    }

    #[test]
    fn same_input_same_bytes() {
        assert_eq!(sample(), sample());
    }

    #[test]
    fn refuses_bad_names_and_short_readers() {
        let mut w = CpioWriter::new(Vec::new());
        assert!(w.dir(b"/abs", Meta::root(0o755)).is_err());
        assert!(w.dir(b"", Meta::root(0o755)).is_err());
        assert!(w.dir(b"a\0b", Meta::root(0o755)).is_err());
        assert!(w.dir(TRAILER.as_bytes(), Meta::root(0o755)).is_err());
        assert!(w.special(b"x", Kind::File, Meta::root(0)).is_err());
        let err = w
            .file_from(b"short", Meta::root(0o644), 10, &mut &b"abc"[..])
            .unwrap_err();
        assert!(
            err.to_string().contains("expected 10 bytes, read 3"),
            "{err}"
        );
    }

    fn cpio_tool() -> Option<&'static str> {
        let found = Command::new("cpio")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            eprintln!("skipping: the cpio tool is not installed (scripts/install-deps.sh adds it)");
        }
        found.then_some("cpio")
    }

    /// GNU cpio lists and extracts what we wrote.
    #[test]
    fn gnu_cpio_agrees() {
        let Some(cpio) = cpio_tool() else { return };
        let mut w = CpioWriter::new(Vec::new());
        w.dir(b"d", Meta::root(0o750)).unwrap();
        w.file(b"d/f", Meta::root(0o640), b"hello cpio\n").unwrap();
        w.symlink(b"d/l", b"f", Meta::root(0o777)).unwrap();
        w.file(b"top", Meta::root(0o755), &[7u8; 1001]).unwrap();
        let archive = w.finish().unwrap();

        let list = run_with_input(Command::new(cpio).args(["-i", "-t", "--quiet"]), &archive);
        assert_eq!(list, "d\nd/f\nd/l\ntop\n");

        let dir = tempfile::tempdir().unwrap();
        run_with_input(
            Command::new(cpio)
                .args(["-i", "-d", "--quiet", "--no-absolute-filenames"])
                .current_dir(dir.path()),
            &archive,
        );
        let d = dir.path();
        assert_eq!(std::fs::read(d.join("d/f")).unwrap(), b"hello cpio\n");
        assert_eq!(std::fs::read_link(d.join("d/l")).unwrap(), Path::new("f"));
        assert_eq!(std::fs::read(d.join("top")).unwrap(), vec![7u8; 1001]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("top"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    fn run_with_input(cmd: &mut Command, input: &[u8]) -> String {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "cpio failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}
