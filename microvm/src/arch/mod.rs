//! CPU-architecture specifics. Only x86_64 exists; the folder keeps the door
//! open the way Firecracker's `vmm/src/arch` does.

pub mod x86_64;
