//! ATA storage: the AHCI host bus adapter ([`ahci`]) and the ATA disks and ATAPI
//! CD-ROMs behind it ([`device`]), as Linux's `ahci` and `sr` drivers, SeaBIOS
//! and Windows' inbox `storahci` drive them.
//!
//! The drives sit on the SCSI target layer ([`crate::scsi`]): an ATA disk's
//! reads and writes run through a SCSI disk unit, an ATAPI CD-ROM's packets are
//! MMC commands for a SCSI CD unit. So the disk backends, statistics and CD
//! media rules are the ones virtio-scsi uses; only ATA's own parts (task file,
//! IDENTIFY data, the controllers' registers and FISes) live here.
//!
//! Specifications: Serial ATA AHCI 1.3.1, ATA8-ACS (commands and IDENTIFY
//! data), SFF-8020i/MMC (ATAPI).

pub mod ahci;
pub mod attach;
pub mod bmdma;
pub mod device;
pub mod ide;
pub mod identify;
#[cfg(test)]
mod tests;
