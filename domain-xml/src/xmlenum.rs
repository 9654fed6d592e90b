//! Enumerated attribute values: one macro that gives each enum its libvirt spelling,
//! so parsing and formatting share a single table per attribute.

/// An enum whose variants are spelled as libvirt spells them in XML.
pub trait XmlEnum: Sized + Copy + 'static {
    /// Every variant, in libvirt's order.
    const ALL: &'static [Self];
    /// The XML spelling.
    fn as_str(self) -> &'static str;
    /// Parses the XML spelling.
    fn from_xml(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }
}

/// Declares a `Copy` enum and its [`XmlEnum`] spelling table.
macro_rules! xml_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $var:ident = $s:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* #[doc = concat!("`", $s, "`")] $var),+ }
        impl $crate::xmlenum::XmlEnum for $name {
            const ALL: &'static [Self] = &[$($name::$var),+];
            fn as_str(self) -> &'static str {
                match self { $($name::$var => $s),+ }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::xmlenum::XmlEnum::as_str(*self))
            }
        }
    };
}
pub(crate) use xml_enum;
