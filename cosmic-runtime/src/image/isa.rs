//! The writer's instruction-set descriptor: what kind of machine and which build wrote an image.

use std::fmt;
use std::sync::OnceLock;

/// A CPU architecture, as recorded in image headers (and sent in a hello, by its code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(from = "u8", into = "u8")]
pub enum Arch {
    /// x86-64 / AMD64.
    X86_64,
    /// 64-bit ARM.
    Aarch64,
    /// IBM Z (big-endian).
    S390x,
    /// 32-bit x86.
    X86,
    /// 32-bit ARM.
    Arm,
    /// 64-bit RISC-V.
    Riscv64,
    /// 64-bit POWER.
    Powerpc64,
    /// An architecture this build has no name for, by its code.
    Other(u8),
}

impl Arch {
    /// The architecture this build runs on.
    pub fn host() -> Arch {
        if cfg!(target_arch = "x86_64") {
            Arch::X86_64
        } else if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else if cfg!(target_arch = "s390x") {
            Arch::S390x
        } else if cfg!(target_arch = "x86") {
            Arch::X86
        } else if cfg!(target_arch = "arm") {
            Arch::Arm
        } else if cfg!(target_arch = "riscv64") {
            Arch::Riscv64
        } else if cfg!(target_arch = "powerpc64") {
            Arch::Powerpc64
        } else {
            Arch::Other(0)
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Arch::Other(code) => code,
            Arch::X86_64 => 1,
            Arch::Aarch64 => 2,
            Arch::S390x => 3,
            Arch::X86 => 4,
            Arch::Arm => 5,
            Arch::Riscv64 => 6,
            Arch::Powerpc64 => 7,
        }
    }

    pub(crate) fn from_code(code: u8) -> Arch {
        match code {
            1 => Arch::X86_64,
            2 => Arch::Aarch64,
            3 => Arch::S390x,
            4 => Arch::X86,
            5 => Arch::Arm,
            6 => Arch::Riscv64,
            7 => Arch::Powerpc64,
            other => Arch::Other(other),
        }
    }
}

impl From<u8> for Arch {
    fn from(code: u8) -> Arch {
        Arch::from_code(code)
    }
}

impl From<Arch> for u8 {
    fn from(arch: Arch) -> u8 {
        arch.code()
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arch::X86_64 => f.write_str("x86_64"),
            Arch::Aarch64 => f.write_str("aarch64"),
            Arch::S390x => f.write_str("s390x"),
            Arch::X86 => f.write_str("x86"),
            Arch::Arm => f.write_str("arm"),
            Arch::Riscv64 => f.write_str("riscv64"),
            Arch::Powerpc64 => f.write_str("powerpc64"),
            Arch::Other(code) => write!(f, "arch#{code}"),
        }
    }
}

/// Byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Endian {
    /// Least significant byte first.
    Little,
    /// Most significant byte first.
    Big,
}

impl Endian {
    /// The byte order of this build's target.
    pub fn host() -> Endian {
        if cfg!(target_endian = "big") {
            Endian::Big
        } else {
            Endian::Little
        }
    }
}

/// What kind of machine and which build wrote an image.
///
/// The portable encoding ignores all of it; a native image is only valid where every field
/// matches. Hosts tell each other theirs in the hello, so that a move between like machines
/// can be native.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Isa {
    /// CPU architecture.
    pub arch: Arch,
    /// Byte order.
    pub endian: Endian,
    /// Width of a pointer (and `usize`) in bits.
    pub pointer_width: u8,
    /// A hash of the running executable, 0 where it could not be read.
    pub build_id: u64,
}

impl Isa {
    /// The descriptor of this process.
    pub fn host() -> Isa {
        Isa {
            arch: Arch::host(),
            endian: Endian::host(),
            pointer_width: usize::BITS as u8,
            build_id: build_id(),
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endian = match self.endian {
            Endian::Little => "le",
            Endian::Big => "be",
        };
        write!(
            f,
            "{} {endian} {}-bit build {:016x}",
            self.arch, self.pointer_width, self.build_id
        )
    }
}

/// The linker's build id of the running executable (the `NT_GNU_BUILD_ID` note, read from
/// memory), folded to 64 bits; 0 where there is none. Two processes with equal build ids run
/// the same machine code, so the same type layouts. Reading the note costs nothing, unlike
/// hashing the executable (0.2 s for a 28 MB debug binary, at every start).
fn build_id() -> u64 {
    static BUILD_ID: OnceLock<u64> = OnceLock::new();
    *BUILD_ID.get_or_init(|| {
        gnu_build_id()
            .map(|id| xxhash_rust::xxh3::xxh3_64(&id))
            .unwrap_or(0)
    })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn gnu_build_id() -> Option<Vec<u8>> {
    use std::ffi::c_void;

    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid `dl_phdr_info` whose program headers and the
        // segments they describe stay mapped during the call; `data` is the
        // `Option<Vec<u8>>` passed by `gnu_build_id`. The first object visited is the program.
        unsafe {
            let info = &*info;
            let found = &mut *(data as *mut Option<Vec<u8>>);
            let headers = std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
            for header in headers.iter().filter(|h| h.p_type == libc::PT_NOTE) {
                let start = (info.dlpi_addr as usize + header.p_vaddr as usize) as *const u8;
                let notes = std::slice::from_raw_parts(start, header.p_memsz as usize);
                if let Some(id) = find_build_id(notes) {
                    *found = Some(id);
                    break;
                }
            }
        }
        1 // stop after the main program
    }

    let mut found: Option<Vec<u8>> = None;
    // SAFETY: `visit` only reads what the loader hands it and writes through `data`, which
    // points at `found`, alive for the whole call.
    unsafe {
        libc::dl_iterate_phdr(Some(visit), &mut found as *mut _ as *mut c_void);
    }
    found
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn gnu_build_id() -> Option<Vec<u8>> {
    None
}

/// Finds the `NT_GNU_BUILD_ID` note in a note segment (words in native byte order).
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
fn find_build_id(mut notes: &[u8]) -> Option<Vec<u8>> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let word = |bytes: &[u8]| u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    while notes.len() >= 12 {
        let name_len = word(&notes[0..4]) as usize;
        let desc_len = word(&notes[4..8]) as usize;
        let kind = word(&notes[8..12]);
        let name_end = 12usize.checked_add(name_len.checked_next_multiple_of(4)?)?;
        let desc_end = name_end.checked_add(desc_len.checked_next_multiple_of(4)?)?;
        if desc_end > notes.len() {
            return None;
        }
        if kind == NT_GNU_BUILD_ID && notes[12..12 + name_len].starts_with(b"GNU") {
            return Some(notes[name_end..name_end + desc_len].to_vec());
        }
        notes = &notes[desc_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_descriptor_names_this_build() {
        let isa = Isa::host();
        assert_eq!(isa.pointer_width as u32, usize::BITS);
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert_ne!(
                isa.build_id, 0,
                "the linker's build id note should be found"
            );
        }
    }
}
