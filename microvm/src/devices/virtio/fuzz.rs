//! Strategies the virtio devices' fuzz targets share (proptest, run by
//! `cargo test` on stable): hostile descriptor tables whose addresses and
//! lengths are mostly plausible for a test rig's 1 MiB of guest memory,
//! sometimes straddling its end, and sometimes anything at all.

use proptest::prelude::*;

// The engine's fuzz targets' time budget (`TWINBOX_FUZZ_SECONDS`), shared.
#[path = "../../../../engine/tests/fuzz/budget.rs"]
mod budget;
pub use budget::fuzz;

/// The guest memory of the devices' test rigs.
pub const RIG_MEMORY: u64 = 1 << 20;

/// A guest address: mostly one of the rig's `data_areas` or inside its
/// memory, sometimes straddling its end or far outside it.
pub fn address(data_areas: &'static [u64]) -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => proptest::sample::select(data_areas),
        3 => 0u64..RIG_MEMORY,
        1 => (RIG_MEMORY - 64)..(RIG_MEMORY + 64),
        1 => any::<u64>(),
    ]
}

/// A buffer length: mostly one the device expects (`typical`), sometimes
/// larger than any buffer, sometimes anything.
pub fn length(typical: &'static [u32]) -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => proptest::sample::select(typical),
        2 => 0u32..70_000,
        1 => any::<u32>(),
    ]
}

/// One descriptor as (address, length, flags, next): any flag combination
/// (NEXT, WRITE, INDIRECT) and mostly in-table links.
pub fn descriptor(
    data_areas: &'static [u64],
    typical: &'static [u32],
) -> impl Strategy<Value = (u64, u32, u16, u16)> {
    (
        address(data_areas),
        length(typical),
        0u16..8,
        prop_oneof![0u16..16, any::<u16>()],
    )
}
