//! What an x86_64 guest needs before its first instruction: where things live in
//! guest memory, a GDT and page tables for 64-bit mode, the CPUID it sees, the
//! MSRs and registers it starts with, and an MP table so it finds every vCPU.

pub mod cpuid;
pub mod gdt;
pub mod layout;
pub mod mptable;
pub mod msrs;
pub mod paging;
pub mod regs;
