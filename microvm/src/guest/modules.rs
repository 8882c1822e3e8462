//! Which kernel module files a guest needs, in load order: the modules asked
//! for by name plus their dependencies, from `<modules_dir>/modules.dep`
//! (written by depmod: `kernel/a.ko: kernel/b.ko kernel/c.ko`).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::GuestError;

/// The parsed `modules.dep` and `modules.builtin` of one kernel.
#[derive(Debug, Default)]
pub struct ModuleIndex {
    /// Module name → (its file relative to the modules dir, its dependencies' files).
    modules: HashMap<String, (String, Vec<String>)>,
    /// Names compiled into the kernel: nothing to load.
    builtin: HashSet<String>,
}

/// A module's canonical name from its file: `kernel/x/kvm-amd.ko.xz` → `kvm_amd`
/// (the kernel treats `-` and `_` alike).
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = [".ko.xz", ".ko.zst", ".ko.gz", ".ko"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))
        .unwrap_or(file);
    stem.replace('-', "_")
}

impl ModuleIndex {
    /// Reads `modules.dep` (required) and `modules.builtin` (optional).
    pub fn load(modules_dir: &Path) -> Result<Self, GuestError> {
        let dep_path = modules_dir.join("modules.dep");
        let dep = std::fs::read_to_string(&dep_path).map_err(|e| GuestError::io(&dep_path, e))?;
        let builtin =
            std::fs::read_to_string(modules_dir.join("modules.builtin")).unwrap_or_default();
        Ok(Self::parse(&dep, &builtin))
    }

    pub fn parse(dep: &str, builtin: &str) -> Self {
        let mut modules = HashMap::new();
        for line in dep.lines() {
            let Some((file, deps)) = line.split_once(':') else {
                continue;
            };
            let file = file.trim();
            if file.is_empty() {
                continue;
            }
            let deps = deps.split_whitespace().map(str::to_string).collect();
            modules.insert(module_name(file), (file.to_string(), deps));
        }
        let builtin = builtin
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(module_name)
            .collect();
        ModuleIndex { modules, builtin }
    }

    /// The kernel has module `name`, as a file or built in.
    pub fn provides(&self, name: &str) -> bool {
        let name = module_name(name);
        self.modules.contains_key(&name) || self.builtin.contains(&name)
    }

    /// The files to load for `names`, dependencies first, each once. Built-in
    /// modules are skipped; an unknown name is an error naming `dep_file`.
    pub fn resolve(&self, names: &[String], dep_file: &Path) -> Result<Vec<String>, GuestError> {
        let by_file: HashMap<&str, &str> = self
            .modules
            .iter()
            .map(|(name, (file, _))| (file.as_str(), name.as_str()))
            .collect();
        let mut order = Vec::new();
        let mut done = HashSet::new();
        for raw in names {
            let name = module_name(raw);
            if self.builtin.contains(&name) && !self.modules.contains_key(&name) {
                continue;
            }
            if !self.modules.contains_key(&name) {
                return Err(GuestError::ModuleNotFound {
                    name: raw.clone(),
                    dep_file: dep_file.to_path_buf(),
                });
            }
            self.visit(&name, &by_file, &mut done, &mut order, 0)?;
        }
        Ok(order)
    }

    /// Depth-first, dependencies before the module (post-order).
    fn visit(
        &self,
        name: &str,
        by_file: &HashMap<&str, &str>,
        done: &mut HashSet<String>,
        order: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), GuestError> {
        if done.contains(name) {
            return Ok(());
        }
        // depmod output has no cycles; a corrupted file must not recurse forever.
        if depth > self.modules.len() {
            return Err(GuestError::ModuleCycle(name.to_string()));
        }
        let (file, deps) = &self.modules[name];
        // depmod lists a module's dependencies so that loading them from the
        // last to the first works; walk them in that order.
        for dep_file in deps.iter().rev() {
            let dep_name = by_file
                .get(dep_file.as_str())
                .map(|n| n.to_string())
                .unwrap_or_else(|| module_name(dep_file));
            if self.modules.contains_key(&dep_name) {
                self.visit(&dep_name, by_file, done, order, depth + 1)?;
            }
        }
        done.insert(name.to_string());
        order.push(file.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/arch/x86/kvm/kvm.ko: kernel/virt/lib/irqbypass.ko
kernel/arch/x86/kvm/kvm-amd.ko: kernel/drivers/crypto/ccp/ccp.ko kernel/arch/x86/kvm/kvm.ko kernel/virt/lib/irqbypass.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_mmio.ko.xz: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/crypto/ccp/ccp.ko:
kernel/virt/lib/irqbypass.ko:
";
    const BUILTIN: &str = "kernel/drivers/tty/serial/8250/8250.ko\nkernel/fs/ext4/ext4.ko\n";

    fn resolve(names: &[&str]) -> Result<Vec<String>, GuestError> {
        let index = ModuleIndex::parse(DEP, BUILTIN);
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        index.resolve(&names, Path::new("/lib/modules/x/modules.dep"))
    }

    #[test]
    fn names_from_files() {
        assert_eq!(module_name("kernel/arch/x86/kvm/kvm-amd.ko"), "kvm_amd");
        assert_eq!(module_name("virtio_mmio.ko.xz"), "virtio_mmio");
        assert_eq!(module_name("a/b.ko.zst"), "b");
        assert_eq!(module_name("kvm-amd"), "kvm_amd");
    }

    #[test]
    fn dependencies_come_first() {
        assert_eq!(
            resolve(&["kvm-amd"]).unwrap(),
            [
                "kernel/virt/lib/irqbypass.ko",
                "kernel/arch/x86/kvm/kvm.ko",
                "kernel/drivers/crypto/ccp/ccp.ko",
                "kernel/arch/x86/kvm/kvm-amd.ko",
            ]
        );
        assert_eq!(
            resolve(&["virtio_mmio"]).unwrap(),
            [
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/virtio/virtio_mmio.ko.xz",
            ]
        );
    }

    #[test]
    fn shared_dependencies_load_once() {
        let files = resolve(&["kvm", "kvm_amd", "irqbypass", "virtio_mmio", "virtio"]).unwrap();
        let unique: HashSet<&String> = files.iter().collect();
        assert_eq!(unique.len(), files.len(), "{files:?}");
        assert_eq!(files.len(), 7);
        let pos = |f: &str| files.iter().position(|x| x.ends_with(f)).unwrap();
        assert!(pos("irqbypass.ko") < pos("kvm.ko"));
        assert!(pos("kvm.ko") < pos("kvm-amd.ko"));
        assert!(pos("virtio_ring.ko") < pos("virtio.ko"));
    }

    #[test]
    fn builtin_is_skipped_unknown_is_an_error() {
        assert!(resolve(&["8250", "ext4"]).unwrap().is_empty());
        let err = resolve(&["no_such_driver"]).unwrap_err().to_string();
        assert!(err.contains("no_such_driver"), "{err}");
        assert!(err.contains("/lib/modules/x/modules.dep"), "{err}");
    }

    #[test]
    fn a_cycle_is_an_error_not_a_hang() {
        let index = ModuleIndex::parse("a.ko: b.ko\nb.ko: a.ko\n", "");
        let err = index.resolve(&["a".to_string()], Path::new("modules.dep"));
        assert!(matches!(err, Err(GuestError::ModuleCycle(_))), "{err:?}");
    }
}
