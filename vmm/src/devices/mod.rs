//! Device models and the buses they sit on.

pub mod bus;
pub mod chardev;
pub mod cmos;
pub mod fw_cfg;
pub mod legacy;
pub mod pflash;
pub mod pm;
pub mod serial;

pub use bus::{Bus, BusDevice, BusError, SharedDevice};
