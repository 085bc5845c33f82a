//! The writer's instruction-set descriptor: what kind of machine and which build wrote an image.

use std::fmt;
use std::sync::OnceLock;

/// A CPU architecture, as recorded in image headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
/// matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// XXH3-64 of the running executable, read once. Two processes with equal build ids run the
/// same machine code, so the same type layouts.
fn build_id() -> u64 {
    static BUILD_ID: OnceLock<u64> = OnceLock::new();
    *BUILD_ID.get_or_init(|| {
        std::env::current_exe()
            .and_then(std::fs::read)
            .map(|bytes| xxhash_rust::xxh3::xxh3_64(&bytes))
            .unwrap_or(0)
    })
}
