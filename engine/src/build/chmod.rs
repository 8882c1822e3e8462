//! COPY/ADD `--chmod`: an octal mode, or chmod(1)'s symbolic clauses
//! (`u+x`, `g-w,o=`, `a=rX`, `g=u`) as current BuildKit accepts them,
//! applied to each copied entry's own mode with no umask.

/// A parsed `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// An absolute mode: every entry gets it.
    Octal(u32),
    /// Symbolic clauses, applied in order to each entry's mode.
    Symbolic(Vec<Clause>),
}

/// One `who op perms` action of a symbolic mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// The bits `who` selects (u, g, o, or all of them).
    who: u32,
    op: char,
    perm: Perm,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Perm {
    /// r/w/x/s/t bits, and `X` (execute for directories and already
    /// executable files).
    Bits { bits: u32, cond_x: bool },
    /// `u`, `g` or `o`: the permissions that class has now.
    Copy(char),
}

const USER: u32 = 0o4700;
const GROUP: u32 = 0o2070;
const OTHER: u32 = 0o1007;

impl Chmod {
    /// Parses a `--chmod` value; None when it is neither form.
    pub fn parse(v: &str) -> Option<Chmod> {
        if v.is_empty() {
            return None;
        }
        if v.bytes().all(|b| b.is_ascii_digit()) {
            return u32::from_str_radix(v, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .map(Chmod::Octal);
        }
        let mut clauses = Vec::new();
        for part in v.split(',') {
            let mut chars = part.chars().peekable();
            let mut who = 0;
            while let Some(c) = chars.peek().copied() {
                who |= match c {
                    'u' => USER,
                    'g' => GROUP,
                    'o' => OTHER,
                    'a' => USER | GROUP | OTHER,
                    _ => break,
                };
                chars.next();
            }
            // no `who` is `a` (BuildKit applies no umask)
            if who == 0 {
                who = USER | GROUP | OTHER;
            }
            let mut any = false;
            while let Some(op) = chars.next() {
                if !matches!(op, '+' | '-' | '=') {
                    return None;
                }
                any = true;
                let perm = match chars.peek().copied() {
                    Some(c @ ('u' | 'g' | 'o')) => {
                        chars.next();
                        Perm::Copy(c)
                    }
                    _ => {
                        let (mut bits, mut cond_x) = (0, false);
                        while let Some(c) = chars.peek().copied() {
                            match c {
                                'r' => bits |= 0o444,
                                'w' => bits |= 0o222,
                                'x' => bits |= 0o111,
                                'X' => cond_x = true,
                                's' => bits |= 0o6000,
                                't' => bits |= 0o1000,
                                _ => break,
                            }
                            chars.next();
                        }
                        Perm::Bits { bits, cond_x }
                    }
                };
                clauses.push(Clause { who, op, perm });
            }
            if !any {
                return None;
            }
        }
        Some(Chmod::Symbolic(clauses))
    }

    /// The mode an entry gets, from its own mode (permission bits) and kind.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let clauses = match self {
            Chmod::Octal(m) => return *m,
            Chmod::Symbolic(c) => c,
        };
        let mut mode = mode & 0o7777;
        for c in clauses {
            let value = match c.perm {
                Perm::Bits { bits, cond_x } => {
                    let x = if cond_x && (is_dir || mode & 0o111 != 0) {
                        0o111
                    } else {
                        0
                    };
                    (bits | x) & c.who
                }
                Perm::Copy(class) => {
                    let shift = match class {
                        'u' => 6,
                        'g' => 3,
                        _ => 0,
                    };
                    let rwx = (mode >> shift) & 0o7;
                    (rwx << 6 | rwx << 3 | rwx) & c.who
                }
            };
            mode = match c.op {
                '+' => mode | value,
                '-' => mode & !value,
                _ => (mode & !c.who) | value,
            };
        }
        mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(v: &str, mode: u32, dir: bool) -> u32 {
        Chmod::parse(v)
            .unwrap_or_else(|| panic!("{v}"))
            .apply(mode, dir)
    }

    #[test]
    fn octal_and_symbolic_modes_as_chmod_without_umask() {
        assert_eq!(apply("0755", 0o600, false), 0o755);
        assert_eq!(apply("644", 0o777, true), 0o644);
        assert_eq!(apply("u+x", 0o644, false), 0o744);
        assert_eq!(apply("+x", 0o644, false), 0o755);
        assert_eq!(apply("g-w,o-rwx", 0o775, false), 0o750);
        assert_eq!(apply("a=r", 0o755, false), 0o444);
        assert_eq!(apply("go=", 0o755, true), 0o700);
        assert_eq!(apply("a=rX", 0o600, false), 0o444);
        assert_eq!(apply("a=rX", 0o700, false), 0o555);
        assert_eq!(apply("a=rX", 0o600, true), 0o555);
        assert_eq!(apply("g=u", 0o640, false), 0o660);
        assert_eq!(apply("o=g", 0o750, false), 0o755);
        assert_eq!(apply("u+s,+t", 0o755, true), 0o5755);
        assert_eq!(apply("u+rw-x", 0o544, false), 0o644);
        assert_eq!(apply("ug+w,o-r", 0o444, false), 0o660);
        for bad in ["", "8", "01777777", "u", "z+x", "u*x", "u+x,", "+q"] {
            assert_eq!(Chmod::parse(bad), None, "{bad}");
        }
    }
}
