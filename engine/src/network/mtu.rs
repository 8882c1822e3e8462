//! The MTU of networks: the uplink's (the interface of the default route)
//! unless `network create -o mtu=N` says otherwise.

/// The MTU of the interface holding the default route (1500 if unknown).
pub fn uplink() -> u32 {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    routes
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[1] == "00000000").then(|| f[0].to_string())
        })
        .find_map(|dev| link(&dev))
        .unwrap_or(1500)
}

/// A link's MTU, if it exists.
pub fn link(dev: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{dev}/mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()
}
