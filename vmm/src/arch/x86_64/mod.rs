//! x86_64: CPUID, MSRs, registers, descriptor tables and page tables for the boot vCPU.

pub mod cpu_model;
pub mod cpuid;
pub mod features;
pub mod hyperv;
pub mod msrs;
pub mod regs;
