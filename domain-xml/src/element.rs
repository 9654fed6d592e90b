//! A small owned XML tree: the formatter's output form, and the verbatim store for
//! content libvirt keeps without interpreting (`<metadata>` children, and elements whose
//! inside this crate does not model, such as `<graphics>` or `<hostdev>`).
//!
//! Serialisation follows libvirt's style: two-space indentation, single-quoted
//! attributes, `<x/>` for empty elements, text kept inline.

use crate::error::{Error, Result};

/// Deepest element nesting accepted inside verbatim content (guards the recursion).
const MAX_DEPTH: usize = 64;

/// The `xml:` prefix's namespace, bound in every document without a declaration.
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// An element: qualified name (`prefix:local` for namespaced ones), attributes in
/// order (namespace declarations included as `xmlns:p`), and children.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Qualified name (`prefix:local` when namespaced).
    pub name: String,
    /// Attributes in document order, namespace declarations included.
    pub attrs: Vec<(String, String)>,
    /// Child elements and text, in order; whitespace-only text is not kept.
    pub children: Vec<Node>,
}

/// A child of an [`Element`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Text content (entities resolved).
    Text(String),
}

impl Element {
    /// An empty element called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Element {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Adds an attribute (builder style).
    pub fn attr(mut self, name: &str, value: impl ToString) -> Self {
        self.attrs.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds an attribute when `value` is `Some`.
    pub fn opt_attr<T: ToString>(self, name: &str, value: Option<T>) -> Self {
        match value {
            Some(v) => self.attr(name, v),
            None => self,
        }
    }

    /// Appends a child element.
    pub fn child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Appends a child element when `Some`.
    pub fn opt_child(self, child: Option<Element>) -> Self {
        match child {
            Some(c) => self.child(c),
            None => self,
        }
    }

    /// Appends several child elements.
    pub fn children<I: IntoIterator<Item = Element>>(mut self, items: I) -> Self {
        self.children.extend(items.into_iter().map(Node::Element));
        self
    }

    /// Sets the text content.
    pub fn text(mut self, text: impl ToString) -> Self {
        self.children.push(Node::Text(text.to_string()));
        self
    }

    /// `<name>text</name>` when `text` is `Some`.
    pub fn text_elem<T: ToString>(name: &str, text: Option<T>) -> Option<Element> {
        text.map(|t| Element::new(name).text(t))
    }

    /// The value of attribute `name`.
    pub fn get_attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child element called `name`.
    pub fn get_child(&self, name: &str) -> Option<&Element> {
        self.child_elements().find(|e| e.name == name)
    }

    /// Child elements in order.
    pub fn child_elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// Concatenated text children.
    pub fn text_content(&self) -> String {
        self.children
            .iter()
            .filter_map(|n| match n {
                Node::Text(t) => Some(t.as_str()),
                Node::Element(_) => None,
            })
            .collect()
    }

    /// Parses a standalone XML element (e.g. a `<metadata>` child handed to
    /// `virDomainSetMetadata`), with the same limits as domain documents.
    pub fn parse(xml: &str) -> Result<Element> {
        let doc = crate::parse::document(xml)?;
        Element::from_node(doc.root_element())
    }

    /// Copies a parsed element (and its subtree) verbatim. Namespace declarations
    /// needed by the subtree are put on this element, so it stands alone; where the
    /// subtree binds one prefix to two namespaces (or undeclares the default one), the
    /// inner binding is declared on the element that needs it, so the copy means what
    /// the input meant.
    pub fn from_node(node: roxmltree::Node<'_, '_>) -> Result<Element> {
        let mut el = Self::copy(node, 0)?;
        let mut hoisted: Vec<(String, String)> = Vec::new();
        for binding in used_bindings(node) {
            if !hoisted.iter().any(|(p, _)| *p == binding.0) {
                hoisted.push(binding);
            }
        }
        let mut scope = hoisted.clone();
        for (prefix, uri) in hoisted.into_iter().rev() {
            let key = decl_key(&prefix);
            if el.get_attr(&key).is_none() {
                el.attrs.insert(0, (key, uri));
            }
        }
        declare_rebound(&mut el, node, &mut scope);
        Ok(el)
    }

    fn copy(node: roxmltree::Node<'_, '_>, depth: usize) -> Result<Element> {
        if depth > MAX_DEPTH {
            return Err(Error::xml(format!(
                "element <{}> is nested more than {MAX_DEPTH} levels deep",
                node.tag_name().name()
            )));
        }
        let mut el = Element::new(qualified_name(node));
        let source = node.document().input_text();
        for a in node.attributes() {
            let name = source[a.range_qname()].to_string();
            el.attrs.push((name, a.value().to_string()));
        }
        for c in node.children() {
            if c.is_element() {
                el.children.push(Node::Element(Self::copy(c, depth + 1)?));
            } else if c.is_text() {
                let t = c.text().unwrap_or_default();
                // Whitespace-only text is layout, not content; libvirt re-indents.
                if !t.trim().is_empty() {
                    el.children.push(Node::Text(t.to_string()));
                }
            }
        }
        Ok(el)
    }

    /// Serialises with libvirt's layout, starting at `indent` levels. Children of
    /// `<metadata>` are written as libxml2 writes them (double quotes), as libvirt does.
    pub fn write(&self, out: &mut String, indent: usize) {
        self.write_quoted(out, indent, '\'');
    }

    fn write_quoted(&self, out: &mut String, indent: usize, quote: char) {
        pad(out, indent);
        out.push('<');
        out.push_str(&self.name);
        for (k, v) in &self.attrs {
            out.push(' ');
            out.push_str(k);
            out.push('=');
            out.push(quote);
            escape_attr(out, v, quote);
            out.push(quote);
        }
        if self.children.is_empty() {
            out.push_str("/>\n");
            return;
        }
        out.push('>');
        let child_quote = if self.name == "metadata" { '"' } else { quote };
        let only_elements = self.children.iter().all(|c| matches!(c, Node::Element(_)));
        if only_elements {
            out.push('\n');
            for c in self.child_elements() {
                c.write_quoted(out, indent + 1, child_quote);
            }
            pad(out, indent);
        } else {
            // Text or mixed content: written inline so no whitespace is invented.
            for c in &self.children {
                match c {
                    Node::Text(t) => escape_text(out, t),
                    Node::Element(e) => {
                        let mut s = String::new();
                        e.write_quoted(&mut s, 0, child_quote);
                        out.push_str(s.trim_end_matches('\n'));
                    }
                }
            }
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push_str(">\n");
    }

    /// The element serialised as a document fragment.
    pub fn to_xml_string(&self) -> String {
        let mut s = String::new();
        self.write(&mut s, 0);
        s
    }

    /// The element serialised as libxml2 writes it (double quotes), which is how libvirt
    /// returns `<metadata>` children (`virDomainGetMetadata`).
    pub fn to_xml_string_libxml(&self) -> String {
        let mut s = String::new();
        self.write_quoted(&mut s, 0, '"');
        s
    }
}

/// The element's name as written, prefix included (roxmltree resolves prefixes to
/// URIs and keeps no prefix; the source text does, and a URI bound to two prefixes
/// would otherwise come back under either).
fn qualified_name(node: roxmltree::Node<'_, '_>) -> String {
    let text = &node.document().input_text()[node.range().start + 1..];
    let end = text
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .unwrap_or(text.len());
    text[..end].to_string()
}

/// The `xmlns` or `xmlns:p` attribute that binds `prefix`.
fn decl_key(prefix: &str) -> String {
    if prefix.is_empty() {
        "xmlns".to_string()
    } else {
        format!("xmlns:{prefix}")
    }
}

/// The prefix of a qualified name (`""` when it has none).
fn prefix_of(qname: &str) -> &str {
    qname.split_once(':').map_or("", |(p, _)| p)
}

/// The (prefix, uri) bindings an element itself needs: its name's (an unprefixed name in
/// no namespace needs the default namespace to be empty) and its prefixed attributes'.
fn own_bindings(node: roxmltree::Node<'_, '_>) -> Vec<(String, String)> {
    let uri = node.tag_name().namespace().unwrap_or_default();
    let mut out = vec![(
        prefix_of(&qualified_name(node)).to_string(),
        uri.to_string(),
    )];
    for a in node.attributes() {
        if let Some(ns) = a.namespace().filter(|ns| *ns != XML_NS) {
            let qname = &node.document().input_text()[a.range_qname()];
            out.push((prefix_of(qname).to_string(), ns.to_string()));
        }
    }
    out
}

/// Bindings the subtree uses, in first-use order (no namespace at all needs none).
fn used_bindings(node: roxmltree::Node<'_, '_>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for d in node.descendants().filter(|n| n.is_element()) {
        for b in own_bindings(d) {
            let none = b.0.is_empty() && b.1.is_empty();
            if !none && !out.contains(&b) {
                out.push(b);
            }
        }
    }
    out
}

/// Declares, on each element, the bindings it needs that differ from those in scope in
/// the output (a prefix rebound to another namespace, `xmlns=''` under a default one).
/// `el` is the copy of `node`.
fn declare_rebound(
    el: &mut Element,
    node: roxmltree::Node<'_, '_>,
    scope: &mut Vec<(String, String)>,
) {
    let depth = scope.len();
    for (prefix, uri) in own_bindings(node) {
        let current = scope
            .iter()
            .rev()
            .find(|(p, _)| *p == prefix)
            .map_or("", |(_, u)| u.as_str());
        if current != uri {
            let key = decl_key(&prefix);
            el.attrs.retain(|(k, _)| *k != key);
            el.attrs.insert(0, (key, uri.clone()));
            scope.push((prefix, uri));
        }
    }
    let copies = el.children.iter_mut().filter_map(|c| match c {
        Node::Element(e) => Some(e),
        Node::Text(_) => None,
    });
    for (ch, n) in copies.zip(node.children().filter(|n| n.is_element())) {
        declare_rebound(ch, n, scope);
    }
    scope.truncate(depth);
}

fn pad(out: &mut String, indent: usize) {
    for _ in 0..indent {
        out.push_str("  ");
    }
}

/// Escapes an attribute value: the XML specials as libvirt's `virBufferEscapeString`
/// does (an apostrophe stays literal inside double quotes, as libxml2 writes it), plus
/// the whitespace characters a parser would otherwise normalise to spaces.
pub fn escape_attr(out: &mut String, s: &str, quote: char) {
    for ch in s.chars() {
        match ch {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' if quote == '"' => out.push('\''),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
}

/// Escapes text content; newlines stay literal, carriage returns are kept as references.
pub fn escape_text(out: &mut String, s: &str) {
    for ch in s.chars() {
        match ch {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}
