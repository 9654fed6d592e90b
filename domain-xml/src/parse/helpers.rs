//! Typed attribute and child helpers over roxmltree (libvirt's `virXMLProp*` in Rust),
//! with libvirt's error wording.

use roxmltree::Node;

use crate::element::Element;
use crate::error::{Error, Result};
use crate::xmlenum::XmlEnum;

/// True when `n` is an element of libvirt's (un-namespaced) vocabulary called `name`.
pub fn is(n: Node<'_, '_>, name: &str) -> bool {
    n.is_element() && n.tag_name().namespace().is_none() && n.tag_name().name() == name
}

/// Un-namespaced child elements.
pub fn elements<'a, 'i>(n: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children()
        .filter(|c| c.is_element() && c.tag_name().namespace().is_none())
}

/// The only child called `name`; a second one is an error.
pub fn single<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Result<Option<Node<'a, 'i>>> {
    let mut found = None;
    for c in elements(n).filter(|c| c.tag_name().name() == name) {
        if found.is_some() {
            return Err(Error::xml(format!(
                "element <{name}> appears more than once in <{}>",
                n.tag_name().name()
            )));
        }
        found = Some(c);
    }
    Ok(found)
}

/// Text of the only child called `name`, trimmed of nothing (libvirt keeps it as is).
pub fn single_text(n: Node<'_, '_>, name: &str) -> Result<Option<String>> {
    Ok(single(n, name)?.map(text))
}

/// All text inside an element.
pub fn text(n: Node<'_, '_>) -> String {
    n.children()
        .filter(|c| c.is_text())
        .filter_map(|c| c.text())
        .collect()
}

/// An attribute's value.
pub fn attr<'a>(n: Node<'a, '_>, name: &str) -> Option<&'a str> {
    n.attribute(name)
}

/// An attribute as an owned string.
pub fn attr_s(n: Node<'_, '_>, name: &str) -> Option<String> {
    n.attribute(name).map(str::to_string)
}

/// A required attribute.
pub fn req_attr<'a>(n: Node<'a, '_>, name: &str) -> Result<&'a str> {
    n.attribute(name).ok_or_else(|| {
        Error::xml(format!(
            "Missing required attribute '{name}' in element '{}'",
            n.tag_name().name()
        ))
    })
}

fn invalid(n: Node<'_, '_>, name: &str, value: &str, expected: &str) -> Error {
    Error::xml(format!(
        "Invalid value for attribute '{name}' in element '{}': '{value}'.{expected}",
        n.tag_name().name()
    ))
}

/// An enumerated attribute.
pub fn attr_enum<T: XmlEnum>(n: Node<'_, '_>, name: &str) -> Result<Option<T>> {
    match n.attribute(name) {
        None => Ok(None),
        Some(v) => T::from_xml(v)
            .map(Some)
            .ok_or_else(|| invalid(n, name, v, "")),
    }
}

/// Parses an unsigned integer in decimal or `0x` hexadecimal.
pub fn parse_uint(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else {
        s.parse().ok()
    }
}

/// An unsigned integer attribute no greater than `max`.
pub fn attr_uint(n: Node<'_, '_>, name: &str, max: u64) -> Result<Option<u64>> {
    match n.attribute(name) {
        None => Ok(None),
        Some(v) => match parse_uint(v) {
            Some(x) if x <= max => Ok(Some(x)),
            Some(_) => Err(invalid(n, name, v, &format!(" Expected a value <= {max}"))),
            None => Err(invalid(n, name, v, " Expected non-negative integer value")),
        },
    }
}

/// A `u32` attribute.
pub fn attr_u32(n: Node<'_, '_>, name: &str) -> Result<Option<u32>> {
    Ok(attr_uint(n, name, u64::from(u32::MAX))?.map(|v| v as u32))
}

/// All attributes except those listed, in order.
pub fn other_attrs(n: Node<'_, '_>, except: &[&str]) -> Vec<(String, String)> {
    n.attributes()
        .filter(|a| a.namespace().is_none() && !except.contains(&a.name()))
        .map(|a| (a.name().to_string(), a.value().to_string()))
        .collect()
}

/// Verbatim copies of the children named in `keep`, in order.
pub fn kept_children(n: Node<'_, '_>, keep: &[&str]) -> Result<Vec<Element>> {
    elements(n)
        .filter(|c| keep.contains(&c.tag_name().name()))
        .map(Element::from_node)
        .collect()
}

/// A verbatim copy of the only child called `name`.
pub fn kept_single(n: Node<'_, '_>, name: &str) -> Result<Option<Element>> {
    single(n, name)?.map(Element::from_node).transpose()
}

/// `<name/>` present (as a flag element such as `<readonly/>`).
pub fn flag(n: Node<'_, '_>, name: &str) -> Result<bool> {
    Ok(single(n, name)?.is_some())
}

/// Verbatim copies of the children named in `order`, sorted into that order (stable), so
/// that the formatter, which writes them in `order`, reproduces the same model.
pub fn kept_children_ordered(n: Node<'_, '_>, order: &[&str]) -> Result<Vec<Element>> {
    let mut out = kept_children(n, order)?;
    out.sort_by_key(|e| order.iter().position(|o| *o == e.name));
    Ok(out)
}
