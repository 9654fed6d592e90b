//! `oxvirt-xml`: check, format and translate libvirt domain XML from the command line.
//!
//! ```text
//! oxvirt-xml validate FILE|-            exit 0, or print the error and exit 1
//! oxvirt-xml format [--inactive] FILE|- canonical XML (virsh dumpxml form) on stdout
//! oxvirt-xml spec FILE|-                the translated MachineSpec as JSON
//! ```
#![forbid(unsafe_code)]

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "oxvirt-xml",
    version,
    about = "Check, format and translate libvirt domain XML"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Parse the file; print warnings for content libvirt would ignore, and whether
    /// oxvirt can run it (exit 0 when it is valid, 1 with the error otherwise).
    Validate {
        /// Domain XML file, or `-` for stdin.
        file: String,
    },
    /// Print the canonical XML.
    Format {
        /// Print the inactive (persistent config) form.
        #[arg(long)]
        inactive: bool,
        /// Domain XML file, or `-` for stdin.
        file: String,
    },
    /// Print the MachineSpec JSON the VMM would run, or the unsupported-configuration error.
    Spec {
        /// Domain XML file, or `-` for stdin.
        file: String,
    },
}

fn read_input(file: &str) -> anyhow::Result<String> {
    let limit = domain_xml::MAX_DOCUMENT_BYTES as u64 + 1;
    let mut buf = String::new();
    if file == "-" {
        std::io::stdin()
            .take(limit)
            .read_to_string(&mut buf)
            .context("reading stdin")?;
    } else {
        std::fs::File::open(file)
            .with_context(|| format!("opening {file}"))?
            .take(limit)
            .read_to_string(&mut buf)
            .with_context(|| format!("reading {file}"))?;
    }
    Ok(buf)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Validate { file } => {
            let xml = read_input(&file)?;
            for p in domain_xml::unknown_content(&xml)? {
                eprintln!("warning: {p} is not known to libvirt and is ignored");
            }
            let dom = domain_xml::Domain::parse(&xml)?;
            match domain_xml::translate(&dom) {
                Ok(spec) => {
                    for w in &spec.warnings {
                        eprintln!("warning: {w}");
                    }
                    println!("{file}: valid; oxvirt can run it")
                }
                Err(e) => {
                    println!("{file}: valid libvirt XML, but oxvirt cannot run it: {e}")
                }
            }
        }
        Cmd::Format { inactive, file } => {
            let dom = domain_xml::Domain::parse(&read_input(&file)?)?;
            print!("{}", dom.to_xml(inactive));
        }
        Cmd::Spec { file } => {
            let spec = domain_xml::spec_from_xml(&read_input(&file)?)?;
            println!("{}", spec.to_json());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
