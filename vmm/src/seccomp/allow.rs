//! An allow-list as data, merged by set union and compiled to BPF by seccompiler.
//!
//! seccompiler's own rule map cannot be merged safely (an empty rule list means
//! "always", so adding a conditional rule to it would narrow it); this keeps the
//! unconditional calls and the argument-checked ones apart until compiling.

use std::collections::{BTreeMap, BTreeSet};

use seccompiler::{
    BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

/// System calls a thread may make.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    /// Allowed with any arguments.
    always: BTreeSet<i64>,
    /// `(call, argument index)` → the values that argument may have.
    when: BTreeMap<(i64, u8), BTreeSet<u64>>,
}

impl AllowList {
    /// Allows each of `calls` with any arguments.
    pub fn calls(&mut self, calls: &[libc::c_long]) -> &mut Self {
        self.always.extend(calls.iter().copied());
        self
    }

    /// Allows `call` when argument `arg` (0-based) is one of `values`. The low 32
    /// bits are compared: every checked argument is an `int` or an ioctl request,
    /// which the kernel truncates to 32 bits itself.
    pub fn call_with(&mut self, call: libc::c_long, arg: u8, values: &[u64]) -> &mut Self {
        self.when
            .entry((call, arg))
            .or_default()
            .extend(values.iter().copied());
        self
    }

    /// Allows `ioctl` with each of `requests`, on any descriptor.
    pub fn ioctls(&mut self, requests: &[u64]) -> &mut Self {
        self.call_with(libc::SYS_ioctl, 1, requests)
    }

    /// Whether `call` is allowed at all (with some arguments).
    pub fn mentions(&self, call: libc::c_long) -> bool {
        self.always.contains(&call) || self.when.keys().any(|(c, _)| *c == call)
    }

    /// Whether `ioctl(request)` is allowed.
    pub fn allows_ioctl(&self, request: u64) -> bool {
        self.always.contains(&libc::SYS_ioctl)
            || self
                .when
                .get(&(libc::SYS_ioctl, 1))
                .is_some_and(|v| v.contains(&request))
    }

    /// The number of calls allowed unconditionally and with argument checks.
    pub fn len(&self) -> usize {
        self.always.len() + self.when.len()
    }

    /// Whether nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The BPF program: listed calls allowed, everything else gets `mismatch`.
    pub fn compile(&self, mismatch: SeccompAction) -> Result<BpfProgram, BackendError> {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for (&(call, arg), values) in &self.when {
            if self.always.contains(&call) {
                continue;
            }
            let list = rules.entry(call).or_default();
            for &v in values {
                let cond =
                    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, v)?;
                list.push(SeccompRule::new(vec![cond])?);
            }
        }
        for &call in &self.always {
            rules.insert(call, Vec::new());
        }
        SeccompFilter::new(rules, mismatch, SeccompAction::Allow, TargetArch::x86_64)?.try_into()
    }
}
