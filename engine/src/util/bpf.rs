//! Just enough eBPF for twinbox's two programs: an assembler for the few
//! instructions `network::socket_lb`'s program uses (with labels, so jumps are
//! written by name, not by counting), and the `bpf()` commands both it and the
//! cgroup v2 device filter (`cgroups::device_filter`) need, called through libc. No compiler, no
//! object files, no bpffs: the program is built here as instructions and the
//! kernel keeps it alive for as long as it is attached to a cgroup.
//!
//! Encodings follow the kernel's `Documentation/bpf/standardization`
//! (instruction-set.rst) and `include/uapi/linux/bpf.h`.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// --- instructions ---------------------------------------------------------

/// One 8-byte instruction, as the kernel reads it (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst_reg and src_reg, 4 bits each (a C bitfield: order follows endianness).
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// Registers: r0 return value, r1-r5 arguments (clobbered by calls), r6-r9
/// kept across calls, r10 the read-only frame pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(pub u8);
pub const R0: Reg = Reg(0);
pub const R1: Reg = Reg(1);
pub const R2: Reg = Reg(2);
pub const R6: Reg = Reg(6);
pub const R7: Reg = Reg(7);
pub const R8: Reg = Reg(8);
pub const R9: Reg = Reg(9);
pub const FP: Reg = Reg(10);

// instruction classes
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
// sizes and modes of loads and stores
const W: u8 = 0x00;
const DW: u8 = 0x18;
const IMM: u8 = 0x00;
const MEM: u8 = 0x60;
// operand source: immediate or register
const K: u8 = 0x00;
const X: u8 = 0x08;
// ALU operations
const ADD: u8 = 0x00;
const AND: u8 = 0x50;
const MOV: u8 = 0xb0;
// jumps
const JA: u8 = 0x00;
const JEQ: u8 = 0x10;
const JNE: u8 = 0x50;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;

/// `src_reg` of a 64-bit immediate load whose value is a map's descriptor:
/// the verifier swaps it for the map's address.
const PSEUDO_MAP_FD: u8 = 1;

fn regs(dst: Reg, src: Reg) -> u8 {
    if cfg!(target_endian = "little") {
        (src.0 << 4) | (dst.0 & 0x0f)
    } else {
        (dst.0 << 4) | (src.0 & 0x0f)
    }
}

fn insn(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: regs(dst, src),
        off,
        imm,
    }
}

/// A program under construction. Jumps name a label; `finish` resolves them.
#[derive(Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: HashMap<&'static str, usize>,
    /// (index of the jump, label it goes to)
    jumps: Vec<(usize, &'static str)>,
}

impl Asm {
    pub fn new() -> Asm {
        Asm::default()
    }

    fn push(&mut self, i: Insn) -> &mut Self {
        self.insns.push(i);
        self
    }

    /// `dst = src` (64 bits).
    pub fn mov64(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.push(insn(ALU64 | MOV | X, dst, src, 0, 0))
    }

    /// `dst = imm` (sign-extended to 64 bits).
    pub fn mov64_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(insn(ALU64 | MOV | K, dst, R0, 0, imm))
    }

    /// `dst = (u32) src` (the upper half cleared).
    pub fn mov32(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.push(insn(ALU | MOV | X, dst, src, 0, 0))
    }

    /// `dst += imm` (64 bits).
    pub fn add64_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(insn(ALU64 | ADD | K, dst, R0, 0, imm))
    }

    /// `dst = (u32) dst & (u32) imm`.
    pub fn and32_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(insn(ALU | AND | K, dst, R0, 0, imm))
    }

    /// `dst = imm64`: the one instruction that takes two slots.
    pub fn ld_imm64(&mut self, dst: Reg, imm: u64) -> &mut Self {
        self.ld_imm64_src(dst, R0, imm)
    }

    /// `dst = &map` for the map behind descriptor `fd`.
    pub fn ld_map_fd(&mut self, dst: Reg, fd: RawFd) -> &mut Self {
        self.ld_imm64_src(dst, Reg(PSEUDO_MAP_FD), fd as u32 as u64)
    }

    fn ld_imm64_src(&mut self, dst: Reg, src: Reg, imm: u64) -> &mut Self {
        self.push(insn(LD | DW | IMM, dst, src, 0, imm as u32 as i32));
        self.push(insn(0, R0, R0, 0, (imm >> 32) as u32 as i32))
    }

    /// `dst = *(u32 *)(src + off)`, zero-extended.
    pub fn ldx_w(&mut self, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(insn(LDX | W | MEM, dst, src, off, 0))
    }

    /// `*(u32 *)(dst + off) = src`.
    pub fn stx_w(&mut self, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.push(insn(STX | W | MEM, dst, src, off, 0))
    }

    /// `*(u32 *)(dst + off) = imm`.
    pub fn st_w(&mut self, dst: Reg, off: i16, imm: i32) -> &mut Self {
        self.push(insn(ST | W | MEM, dst, R0, off, imm))
    }

    /// Calls kernel helper number `helper` (arguments in r1-r5, result in r0).
    pub fn call(&mut self, helper: i32) -> &mut Self {
        self.push(insn(JMP | CALL, R0, R0, 0, helper))
    }

    pub fn exit(&mut self) -> &mut Self {
        self.push(insn(JMP | EXIT, R0, R0, 0, 0))
    }

    fn jump(&mut self, code: u8, dst: Reg, src: Reg, imm: i32, to: &'static str) -> &mut Self {
        self.jumps.push((self.insns.len(), to));
        self.push(insn(code, dst, src, 0, imm))
    }

    /// `goto to`.
    pub fn ja(&mut self, to: &'static str) -> &mut Self {
        self.jump(JMP | JA, R0, R0, 0, to)
    }

    /// `if dst == imm goto to` (64-bit compare, imm sign-extended).
    pub fn jeq_imm(&mut self, dst: Reg, imm: i32, to: &'static str) -> &mut Self {
        self.jump(JMP | JEQ | K, dst, R0, imm, to)
    }

    /// `if dst != imm goto to`.
    pub fn jne_imm(&mut self, dst: Reg, imm: i32, to: &'static str) -> &mut Self {
        self.jump(JMP | JNE | K, dst, R0, imm, to)
    }

    /// `if dst != src goto to`.
    pub fn jne(&mut self, dst: Reg, src: Reg, to: &'static str) -> &mut Self {
        self.jump(JMP | JNE | X, dst, src, 0, to)
    }

    /// Names the next instruction.
    pub fn label(&mut self, name: &'static str) -> &mut Self {
        self.labels.insert(name, self.insns.len());
        self
    }

    /// The instructions with every jump's offset filled in (offsets count
    /// instructions from the one after the jump).
    pub fn finish(&self) -> Result<Vec<Insn>, String> {
        let mut out = self.insns.clone();
        for &(at, label) in &self.jumps {
            let target = *self
                .labels
                .get(label)
                .ok_or_else(|| format!("jump to undefined label {label:?}"))?;
            let off = target as i64 - at as i64 - 1;
            out[at].off = i16::try_from(off).map_err(|_| format!("jump to {label} too far"))?;
        }
        Ok(out)
    }
}

// --- the bpf() system call ------------------------------------------------

// commands (enum bpf_cmd)
const MAP_CREATE: u32 = 0;
const MAP_LOOKUP_ELEM: u32 = 1;
const MAP_UPDATE_ELEM: u32 = 2;
const MAP_DELETE_ELEM: u32 = 3;
const MAP_GET_NEXT_KEY: u32 = 4;
const PROG_LOAD: u32 = 5;
const PROG_ATTACH: u32 = 8;
const PROG_DETACH: u32 = 9;
const PROG_GET_FD_BY_ID: u32 = 13;
const MAP_GET_FD_BY_ID: u32 = 14;
const OBJ_GET_INFO_BY_FD: u32 = 15;
const PROG_QUERY: u32 = 16;

/// `BPF_MAP_TYPE_HASH`.
pub const MAP_TYPE_HASH: u32 = 1;
/// `BPF_F_NO_PREALLOC`: entries are allocated when added, so a large
/// `max_entries` costs nothing until used.
pub const F_NO_PREALLOC: u32 = 1;
/// `BPF_F_ALLOW_MULTI`: our program runs after any others on the cgroup,
/// and theirs after ours; nobody replaces anybody.
pub const F_ALLOW_MULTI: u32 = 1 << 1;
/// Map update flag `BPF_ANY`: create or replace.
const ANY: u64 = 0;

/// Names of programs and maps: 15 bytes and a NUL.
pub const OBJ_NAME_LEN: usize = 16;

/// Runs `bpf(cmd, attr, size_of(attr))`. Every attribute struct below is
/// `repr(C)`, laid out as the kernel's union member, with explicit zeroed
/// padding: the kernel rejects non-zero bytes past what it knows.
fn sys<T>(cmd: u32, attr: &mut T) -> io::Result<i64> {
    // SAFETY: `attr` is a live, exclusively borrowed repr(C) struct of
    // `size_of::<T>()` bytes; the kernel reads and writes only within that size.
    // Pointers inside it (keys, buffers) point at memory the callers keep
    // alive and large enough for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_long,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A call that returns a new descriptor.
fn sys_fd<T>(cmd: u32, attr: &mut T) -> io::Result<OwnedFd> {
    let fd = sys(cmd, attr)?;
    // SAFETY: on success these commands return a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn name16(name: &str) -> [u8; OBJ_NAME_LEN] {
    let mut out = [0u8; OBJ_NAME_LEN];
    for (o, b) in out.iter_mut().zip(name.bytes().take(OBJ_NAME_LEN - 1)) {
        *o = b;
    }
    out
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; OBJ_NAME_LEN],
    _pad: u32,
}

/// A new map.
pub fn map_create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags: flags,
        map_name: name16(name),
        ..Default::default()
    };
    sys_fd(MAP_CREATE, &mut attr)
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    /// value, or next_key for MAP_GET_NEXT_KEY
    value: u64,
    flags: u64,
}

fn elem_attr(map: &OwnedFd, key: *const u8, value: *const u8, flags: u64) -> MapElemAttr {
    MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key as u64,
        value: value as u64,
        flags,
        ..Default::default()
    }
}

/// Adds or replaces `key` → `value`. Sizes must be the map's.
pub fn map_update(map: &OwnedFd, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = elem_attr(map, key.as_ptr(), value.as_ptr(), ANY);
    sys(MAP_UPDATE_ELEM, &mut attr).map(|_| ())
}

/// The value of `key` (into a buffer of `value_size` bytes), None when absent.
pub fn map_lookup(map: &OwnedFd, key: &[u8], value_size: usize) -> io::Result<Option<Vec<u8>>> {
    let mut value = vec![0u8; value_size];
    let mut attr = elem_attr(map, key.as_ptr(), value.as_mut_ptr(), 0);
    match sys(MAP_LOOKUP_ELEM, &mut attr) {
        Ok(_) => Ok(Some(value)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes `key`; absent is fine.
pub fn map_delete(map: &OwnedFd, key: &[u8]) -> io::Result<()> {
    let mut attr = elem_attr(map, key.as_ptr(), std::ptr::null(), 0);
    match sys(MAP_DELETE_ELEM, &mut attr) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Every key of a map (keys of `key_size` bytes).
pub fn map_keys(map: &OwnedFd, key_size: usize) -> io::Result<Vec<Vec<u8>>> {
    let mut keys: Vec<Vec<u8>> = vec![];
    loop {
        let mut next = vec![0u8; key_size];
        // no key yet: the kernel starts from the first
        let key = keys.last().map_or(std::ptr::null(), |k| k.as_ptr());
        let mut attr = elem_attr(map, key, next.as_mut_ptr(), 0);
        match sys(MAP_GET_NEXT_KEY, &mut attr) {
            Ok(_) => keys.push(next),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(keys),
            Err(e) => return Err(e),
        }
        // a hash map being changed under us could cycle: a map never holds
        // more than its max_entries, so stop well past any real size
        if keys.len() > 1 << 20 {
            return Ok(keys);
        }
    }
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; OBJ_NAME_LEN],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// Loads a program through the verifier. On refusal, the error carries the
/// verifier's last lines (the program is loaded a second time with its log on).
pub fn prog_load(
    prog_type: u32,
    expected_attach_type: u32,
    insns: &[Insn],
    license: &str,
    name: &str,
) -> io::Result<OwnedFd> {
    let license = CString::new(license).map_err(|e| io::Error::other(e.to_string()))?;
    let attr = |log: &mut Vec<u8>| ProgLoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: u32::from(!log.is_empty()),
        log_size: log.len() as u32,
        log_buf: if log.is_empty() {
            0
        } else {
            log.as_mut_ptr() as u64
        },
        prog_name: name16(name),
        expected_attach_type,
        ..Default::default()
    };
    match sys_fd(PROG_LOAD, &mut attr(&mut vec![])) {
        Ok(fd) => Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Err(e),
        Err(e) => {
            let mut log = vec![0u8; 64 * 1024];
            let again = sys_fd(PROG_LOAD, &mut attr(&mut log));
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            let tail: Vec<&str> = text.lines().rev().take(4).collect();
            match again {
                Ok(fd) => Ok(fd),
                Err(_) if tail.is_empty() => Err(e),
                Err(_) => Err(io::Error::new(
                    e.kind(),
                    format!(
                        "{e}; verifier: {}",
                        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                    ),
                )),
            }
        }
    }
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// Attaches `prog` to the cgroup behind `cgroup` (a directory descriptor).
pub fn prog_attach(
    cgroup: &OwnedFd,
    prog: &OwnedFd,
    attach_type: u32,
    flags: u32,
) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        attach_flags: flags,
        ..Default::default()
    };
    sys(PROG_ATTACH, &mut attr).map(|_| ())
}

/// Detaches that very program (with several attached, naming it is required).
pub fn prog_detach(cgroup: &OwnedFd, prog: &OwnedFd, attach_type: u32) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        ..Default::default()
    };
    sys(PROG_DETACH, &mut attr).map(|_| ())
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// Ids of the programs attached to this cgroup itself (not inherited ones).
pub fn prog_query(cgroup: &OwnedFd, attach_type: u32) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    sys(PROG_QUERY, &mut attr)?;
    ids.truncate(attr.prog_cnt.min(64) as usize);
    Ok(ids)
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// A descriptor of the program with this id (CAP_SYS_ADMIN).
pub fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetFdByIdAttr {
        id,
        ..Default::default()
    };
    sys_fd(PROG_GET_FD_BY_ID, &mut attr)
}

/// A descriptor of the map with this id.
pub fn map_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetFdByIdAttr {
        id,
        ..Default::default()
    };
    sys_fd(MAP_GET_FD_BY_ID, &mut attr)
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The head of `struct bpf_prog_info`, up to the name: all we read.
#[repr(C)]
#[derive(Default)]
struct ProgInfoHead {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; OBJ_NAME_LEN],
}

/// What a loaded program is called and which maps it uses.
#[derive(Debug, Clone)]
pub struct ProgInfo {
    pub name: String,
    pub map_ids: Vec<u32>,
}

pub fn prog_info(prog: &OwnedFd) -> io::Result<ProgInfo> {
    let mut map_ids = vec![0u32; 8];
    let mut info = ProgInfoHead {
        nr_map_ids: map_ids.len() as u32,
        map_ids: map_ids.as_mut_ptr() as u64,
        ..Default::default()
    };
    let mut attr = InfoAttr {
        bpf_fd: prog.as_raw_fd() as u32,
        info_len: std::mem::size_of::<ProgInfoHead>() as u32,
        info: &mut info as *mut ProgInfoHead as u64,
    };
    sys(OBJ_GET_INFO_BY_FD, &mut attr)?;
    map_ids.truncate(info.nr_map_ids.min(8) as usize);
    let end = info
        .name
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(OBJ_NAME_LEN);
    Ok(ProgInfo {
        name: String::from_utf8_lossy(&info.name[..end]).into_owned(),
        map_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(i: &Insn) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = i.code;
        b[1] = i.regs;
        b[2..4].copy_from_slice(&i.off.to_le_bytes());
        b[4..8].copy_from_slice(&i.imm.to_le_bytes());
        b
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn encodes_as_the_kernel_documents() {
        // reference encodings from the instruction-set document and from
        // `llvm-objdump -d` of equivalent C (e.g. "bf 16 00 00 00 00 00 00  r6 = r1")
        let mut a = Asm::new();
        a.mov64(R6, R1)
            .ldx_w(R7, R6, 36)
            .stx_w(FP, -8, R7)
            .st_w(FP, -4, 0)
            .call(1)
            .ld_imm64(R1, 0x1122_3344_5566_7788)
            .mov64_imm(R0, 1)
            .exit();
        let got: Vec<[u8; 8]> = a.finish().unwrap().iter().map(bytes).collect();
        assert_eq!(got[0], [0xbf, 0x16, 0, 0, 0, 0, 0, 0]);
        assert_eq!(got[1], [0x61, 0x67, 36, 0, 0, 0, 0, 0]);
        assert_eq!(got[2], [0x63, 0x7a, 0xf8, 0xff, 0, 0, 0, 0]);
        assert_eq!(got[3], [0x62, 0x0a, 0xfc, 0xff, 0, 0, 0, 0]);
        assert_eq!(got[4], [0x85, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(got[5], [0x18, 0x01, 0, 0, 0x88, 0x77, 0x66, 0x55]);
        assert_eq!(got[6], [0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11]);
        assert_eq!(got[7], [0xb7, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(got[8], [0x95, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn jumps_count_from_the_next_instruction_and_skip_wide_loads() {
        let mut a = Asm::new();
        a.jeq_imm(R1, 0, "end") // 0
            .ld_imm64(R2, 7) // 1-2
            .ja("end") // 3
            .label("back")
            .mov64_imm(R0, 0) // 4
            .label("end")
            .exit(); // 5
        let p = a.finish().unwrap();
        assert_eq!(p[0].off, 4);
        assert_eq!(p[3].off, 1);
        let mut bad = Asm::new();
        bad.ja("nowhere");
        assert!(bad.finish().is_err());
    }
}
