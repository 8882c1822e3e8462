//! The charts the lessons draw, built in one place: a lesson hands over its
//! measurements and gets the chart back, so `compare`, `startup`, `memory` and
//! the rest draw the same thing the same way (titles, whiskers, notes).

use crate::measure::time::Stats;
use crate::report::{Bar, Chart, Measured, Side, Unit};

/// One bar from a measured value.
pub fn bar(label: &str, side: Side, value: Measured<f64>, spread: Option<(f64, f64)>) -> Bar {
    Bar {
        label: label.to_string(),
        value,
        spread,
        side,
    }
}

/// A bar at the median of several runs, with a whisker from the fastest to
/// the slowest.
pub fn stats_bar(label: &str, side: Side, m: &Measured<Stats>) -> Bar {
    match m {
        Measured::Value(s) => bar(label, side, Measured::Value(s.median), Some((s.min, s.max))),
        Measured::Failed(why) => bar(label, side, Measured::failed(why.clone()), None),
    }
}

/// A byte count as a bar.
pub fn bytes_bar(label: &str, side: Side, m: &Measured<u64>) -> Bar {
    bar(label, side, m.as_ref().map(|b| *b as f64), None)
}

/// The note under a timing chart whose VM half ran under software emulation.
pub fn emulation_note(emulated: bool) -> Option<String> {
    emulated.then(|| {
        "microVM: software emulation (TCG), many times slower than hardware-assisted KVM".into()
    })
}

/// Container against microVM, one timing each (median and spread).
pub fn timing(
    title: &str,
    container: &Measured<Stats>,
    vm: &Measured<Stats>,
    emulated: bool,
) -> Chart {
    Chart {
        title: format!("{title} (median; whiskers: fastest to slowest)"),
        unit: Unit::Milliseconds,
        bars: vec![
            stats_bar("container", Side::Container, container),
            stats_bar("microVM", Side::Vm, vm),
        ],
        note: emulation_note(emulated),
    }
}

/// The two timings every side-by-side run has: until the workload starts,
/// and until everything has ended.
pub fn start_and_end(
    c_start: &Measured<Stats>,
    v_start: &Measured<Stats>,
    c_total: &Measured<Stats>,
    v_total: &Measured<Stats>,
    emulated: bool,
) -> [Chart; 2] {
    [
        timing("time until the workload starts", c_start, v_start, emulated),
        timing(
            "time until everything has ended",
            c_total,
            v_total,
            emulated,
        ),
    ]
}

/// Memory on the host: a container's cgroup peak plus its supervisor against
/// the VMM process and the guest RAM it reserved.
pub fn host_memory(
    container_total: &Measured<u64>,
    vmm_rss: &Measured<u64>,
    vm_reserved: u64,
    note: Option<String>,
) -> Chart {
    Chart {
        title: "memory on the host".into(),
        unit: Unit::Bytes,
        bars: vec![
            bytes_bar(
                "container: cgroup peak + supervisor",
                Side::Container,
                container_total,
            ),
            bytes_bar("microVM: VMM process RSS", Side::Vm, vmm_rss),
            bytes_bar(
                "microVM: guest RAM reserved",
                Side::Vm,
                &Measured::Value(vm_reserved),
            ),
        ],
        note,
    }
}

/// Bytes for `copies` copies of one image: containers sharing its layers
/// in the store, the same if each had its own copy, and microVMs each
/// carrying its own root file system.
pub fn copies(
    copies: usize,
    store_total: u64,
    naive_total: u64,
    vms_total: &Measured<u64>,
) -> Chart {
    Chart {
        title: format!("bytes for {copies} copies"),
        unit: Unit::Bytes,
        bars: vec![
            bar(
                &format!("{copies} containers (store)"),
                Side::Container,
                Measured::Value(store_total as f64),
                None,
            ),
            bar(
                &format!("{copies} containers if not shared"),
                Side::Host,
                Measured::Value(naive_total as f64),
                None,
            ),
            bar(
                &format!("{copies} microVMs (their root fs)"),
                Side::Vm,
                vms_total.as_ref().map(|v| *v as f64),
                None,
            ),
        ],
        note: Some("apparent sizes, as `twinbox system df` counts them; a VM's root file system lives in its RAM, so its bytes are memory, not disk".into()),
    }
}

/// The same CPU work in a container, without a limit and with `--cpus`.
pub fn cpu_quota(cpus: f64, free_ms: Measured<f64>, capped_ms: Measured<f64>) -> Chart {
    Chart {
        title: "the same CPU work in a container (total time)".into(),
        unit: Unit::Milliseconds,
        bars: vec![
            bar("no limit", Side::Container, free_ms, None),
            bar(&format!("--cpus {cpus}"), Side::Container, capped_ms, None),
        ],
        note: Some(format!(
            "the quota allows {:.0} ms of CPU time in every 100 ms period",
            cpus * 100.0
        )),
    }
}

/// A chart of counts or sizes as something grows (one bar per step), e.g.
/// host memory as more containers run.
pub fn growth(
    title: &str,
    unit: Unit,
    points: &[(String, Side, Measured<f64>)],
    note: Option<String>,
) -> Chart {
    Chart {
        title: title.into(),
        unit,
        bars: points
            .iter()
            .map(|(label, side, v)| bar(label, *side, v.clone(), None))
            .collect(),
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_timings_stay_failed_bars() {
        let ok = Measured::Value(Stats::of(&[3.0, 1.0, 2.0]).unwrap());
        let bad: Measured<Stats> = Measured::failed("no kvm");
        let c = timing("t", &ok, &bad, true);
        assert_eq!(c.bars[0].value, Measured::Value(2.0));
        assert_eq!(c.bars[0].spread, Some((1.0, 3.0)));
        assert_eq!(c.bars[1].value.failure(), Some("no kvm"));
        assert!(c.note.is_some());
        let m = host_memory(
            &Measured::Value(10),
            &Measured::failed("x"),
            256 << 20,
            None,
        );
        assert_eq!(m.bars[2].value, Measured::Value((256u64 << 20) as f64));
    }
}
