//! The guard of native images: a native body is the writer's memory, valid only where every
//! fact about the writer that shapes memory is the reader's too. Checked before a byte of the
//! body is decoded.

use super::isa::{Arch, Endian, Isa};

/// The first difference between the writer of a native image and the host that would read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NativeMismatch {
    /// Another CPU architecture.
    #[error("it was written on {image}, this host is {host}")]
    Arch {
        /// The writer's.
        image: Arch,
        /// This host's.
        host: Arch,
    },
    /// Another byte order.
    #[error("it was written {image:?}-endian, this host is {host:?}-endian")]
    Endian {
        /// The writer's.
        image: Endian,
        /// This host's.
        host: Endian,
    },
    /// Another pointer width.
    #[error("it was written with {image}-bit pointers, this host has {host}-bit pointers")]
    PointerWidth {
        /// The writer's, in bits.
        image: u8,
        /// This host's, in bits.
        host: u8,
    },
    /// The writer's build id is unknown (0): nothing shows it ran this build.
    #[error("the writer's build id is unknown (0), so nothing shows it ran this build")]
    UnknownWriterBuild,
    /// This host's build id is unknown (0): nothing shows the writer ran this build.
    #[error("this host's build id is unknown (0: the executable has no GNU build-id note), so nothing shows the writer ran this build")]
    UnknownHostBuild,
    /// Another build of the program.
    #[error("it was written by build {image:016x}, this host runs build {host:016x}")]
    BuildId {
        /// The writer's build id.
        image: u64,
        /// This host's.
        host: u64,
    },
    /// The types held as raw memory are laid out differently.
    #[error("its layout fingerprint {image:016x} differs from this build's {host:016x} (the size, alignment or name of a `native` element type changed)")]
    Layout {
        /// The image's layout fingerprint.
        image: u64,
        /// This build's for the same type.
        host: u64,
    },
}

/// Whether memory written by `writer` with layout fingerprint `writer_layout` may be read as
/// memory by `reader` with `reader_layout`: the first difference, in the order of the fields.
pub fn check_native(
    writer: &Isa,
    writer_layout: u64,
    reader: &Isa,
    reader_layout: u64,
) -> Result<(), NativeMismatch> {
    if writer.arch != reader.arch {
        return Err(NativeMismatch::Arch {
            image: writer.arch,
            host: reader.arch,
        });
    }
    if writer.endian != reader.endian {
        return Err(NativeMismatch::Endian {
            image: writer.endian,
            host: reader.endian,
        });
    }
    if writer.pointer_width != reader.pointer_width {
        return Err(NativeMismatch::PointerWidth {
            image: writer.pointer_width,
            host: reader.pointer_width,
        });
    }
    if writer.build_id == 0 {
        return Err(NativeMismatch::UnknownWriterBuild);
    }
    if reader.build_id == 0 {
        return Err(NativeMismatch::UnknownHostBuild);
    }
    if writer.build_id != reader.build_id {
        return Err(NativeMismatch::BuildId {
            image: writer.build_id,
            host: reader.build_id,
        });
    }
    if writer_layout != reader_layout {
        return Err(NativeMismatch::Layout {
            image: writer_layout,
            host: reader_layout,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn isa() -> Isa {
        Isa {
            arch: Arch::X86_64,
            endian: Endian::Little,
            pointer_width: 64,
            build_id: 0xfeed,
        }
    }

    #[test]
    fn every_field_of_the_guard_is_checked_in_order() {
        let host = isa();
        assert_eq!(check_native(&host, 7, &host, 7), Ok(()));
        let cases = [
            (
                Isa {
                    arch: Arch::Aarch64,
                    endian: Endian::Big,
                    ..host
                },
                7,
                NativeMismatch::Arch {
                    image: Arch::Aarch64,
                    host: Arch::X86_64,
                },
            ),
            (
                Isa {
                    endian: Endian::Big,
                    ..host
                },
                7,
                NativeMismatch::Endian {
                    image: Endian::Big,
                    host: Endian::Little,
                },
            ),
            (
                Isa {
                    pointer_width: 32,
                    ..host
                },
                7,
                NativeMismatch::PointerWidth {
                    image: 32,
                    host: 64,
                },
            ),
            (
                Isa {
                    build_id: 0,
                    ..host
                },
                7,
                NativeMismatch::UnknownWriterBuild,
            ),
            (
                Isa {
                    build_id: 1,
                    ..host
                },
                7,
                NativeMismatch::BuildId {
                    image: 1,
                    host: 0xfeed,
                },
            ),
            (host, 8, NativeMismatch::Layout { image: 8, host: 7 }),
        ];
        for (writer, layout, expected) in cases {
            assert_eq!(check_native(&writer, layout, &host, 7), Err(expected));
        }
        let unknown = Isa {
            build_id: 0,
            ..host
        };
        assert_eq!(
            check_native(&host, 7, &unknown, 7),
            Err(NativeMismatch::UnknownHostBuild)
        );
        assert!(check_native(&unknown, 7, &unknown, 7).is_err());
    }
}
