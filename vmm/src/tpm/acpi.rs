//! How ACPI describes the TPM (TCG ACPI Specification, and what QEMU's `tpm-crb` and
//! `tpm-tis` give): a TPM2 table pointing at the CRB control area with start method 7
//! ("uses the Command Response Buffer interface"), or with no control area and start
//! method 6 ("memory mapped": TIS), and a `MSFT0101` device whose `_CRS` is the CRB
//! page or the TIS's five locality pages. Linux's `tpm_crb` binds to it for method 7
//! (and checks the control area and buffers against it), `tpm_tis` for method 6.
//!
//! Under firmware the table has an event-log area, as QEMU gives it: LAML is 64 KiB
//! and LASA points at `etc/tpm/log`, a zeroed fw_cfg file the table loader allocates
//! (`acpi/loader.rs`), where SeaBIOS logs its measurements for the OS to read. With
//! direct kernel boot there is no firmware to log anything: both are 0.

use acpi_tables::aml;
use acpi_tables::sdt::Sdt;
use acpi_tables::Aml;

use machine_spec::TpmModel;

use super::crb::{CRB_BASE, CTRL_AREA};

/// TPM2 table revision 4 with the log-area fields: 76 bytes.
const TPM2_LEN: u32 = 76;
/// Offset of LAML (log area minimum length, u32) in the table.
const LAML_OFFSET: usize = 64;
/// Offset of LASA (log area start address, u64) in the table.
pub const LASA_OFFSET: usize = 68;
/// The firmware event log's size (QEMU's `TPM_LOG_AREA_MINIMUM_SIZE`).
pub const LOG_AREA_SIZE: u32 = 64 * 1024;
/// Start method: Command Response Buffer.
pub const START_METHOD_CRB: u32 = 7;
/// Start method: memory mapped (the TIS FIFO interface).
pub const START_METHOD_TIS: u32 = 6;

/// The TPM2 table (checksum left to the placement, like every other table), with a
/// log area of `log_len` bytes whose address (LASA, at [`LASA_OFFSET`]) the
/// placement fills in; 0: no log area.
pub fn tpm2_table(
    model: TpmModel,
    oem_id: [u8; 6],
    oem_table_id: [u8; 8],
    oem_revision: u32,
    log_len: u32,
) -> Vec<u8> {
    let mut t = Sdt::new(*b"TPM2", TPM2_LEN, 4, oem_id, oem_table_id, oem_revision);
    t.write_u16(36, 0); // platform class: client
    let (control_area, start_method) = match model {
        TpmModel::Crb => (CRB_BASE + CTRL_AREA, START_METHOD_CRB),
        TpmModel::Tis => (0, START_METHOD_TIS),
    };
    t.write_u64(40, control_area);
    t.write_u32(48, start_method);
    // 52..64: start-method parameters (none for CRB).
    t.write_u32(LAML_OFFSET, log_len);
    t.as_slice().to_vec()
}

/// The DSDT device, for `\_SB`.
pub fn dsdt_device(sink: &mut Vec<u8>, model: TpmModel) {
    // No interrupt: QEMU leaves the TIS's IRQ out too, and drivers poll.
    let (base, len) = super::mmio_range(model);
    let page = aml::Memory32Fixed::new(true, base as u32, len as u32);
    let crs = aml::ResourceTemplate::new(vec![&page]);
    aml::Device::new(
        "TPM_".into(),
        vec![
            &aml::Name::new("_HID".into(), &"MSFT0101"),
            &aml::Name::new("_STR".into(), &"TPM 2.0 Device"),
            &aml::Name::new("_STA".into(), &0xfu8),
            &aml::Name::new("_CRS".into(), &crs),
        ],
    )
    .to_aml_bytes(sink);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tpm2_table_points_at_the_crb_control_area_with_start_method_7() {
        let t = tpm2_table(TpmModel::Crb, *b"OXVIRT", *b"OXVIRTVM", 1, LOG_AREA_SIZE);
        assert_eq!(&t[..4], b"TPM2");
        assert_eq!(t.len(), TPM2_LEN as usize);
        assert_eq!(u32::from_le_bytes(t[4..8].try_into().unwrap()), TPM2_LEN);
        assert_eq!(t[8], 4, "revision");
        assert_eq!(
            u64::from_le_bytes(t[40..48].try_into().unwrap()),
            0xfed4_0040
        );
        assert_eq!(u32::from_le_bytes(t[48..52].try_into().unwrap()), 7);
        assert_eq!(u32::from_le_bytes(t[64..68].try_into().unwrap()), 0x10000);
        assert_eq!(&t[LASA_OFFSET..LASA_OFFSET + 8], &[0; 8]);
    }

    #[test]
    fn dsdt_device_names_msft0101_and_the_crb_page() {
        let mut aml = Vec::new();
        dsdt_device(&mut aml, TpmModel::Crb);
        let find = |needle: &[u8]| aml.windows(needle.len()).any(|w| w == needle);
        assert!(find(b"MSFT0101"));
        // Memory32Fixed descriptor: 0x86, length 9, read-write, base, length.
        let mut desc = vec![0x86, 9, 0, 1];
        desc.extend_from_slice(&0xfed4_0000u32.to_le_bytes());
        desc.extend_from_slice(&0x1000u32.to_le_bytes());
        assert!(find(&desc), "{aml:02x?}");
    }

    #[test]
    fn tis_has_no_control_area_start_method_6_and_five_locality_pages() {
        let t = tpm2_table(TpmModel::Tis, *b"OXVIRT", *b"OXVIRTVM", 1, 0);
        assert_eq!(&t[40..48], &[0; 8], "no control area");
        assert_eq!(u32::from_le_bytes(t[48..52].try_into().unwrap()), 6);
        let mut aml = Vec::new();
        dsdt_device(&mut aml, TpmModel::Tis);
        let mut desc = vec![0x86, 9, 0, 1];
        desc.extend_from_slice(&0xfed4_0000u32.to_le_bytes());
        desc.extend_from_slice(&0x5000u32.to_le_bytes());
        assert!(aml.windows(desc.len()).any(|w| w == desc), "{aml:02x?}");
        assert!(aml.windows(8).any(|w| w == b"MSFT0101"));
    }
}
