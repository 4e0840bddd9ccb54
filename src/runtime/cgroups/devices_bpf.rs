//! The cgroup v2 device controller: compiles device [`Rule`]s to a `BPF_PROG_TYPE_CGROUP_DEVICE`
//! program (runc's devicefilter layout) and attaches it to the cgroup, replacing any filter a
//! previous create/update attached.
//!
//! The program reads `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`
//! (type in the low 16 bits of `access_type`, access bits in the high 16), then tests the rules
//! from last to first and returns the verdict of the first that matches, so the last matching
//! rule wins. Rules before the last catch-all (`a`) can never decide and are not emitted; that
//! catch-all (or allow, when there is none) is the fall-through verdict.

use std::ffi::CStr;
use std::os::fd::AsFd;
use std::path::Path;

use crate::sys::bpf::{self, Insn};

use super::devices::{Kind, Rule, ACC_ALL};
use super::CgroupError;

// eBPF opcodes used here (uapi linux/bpf.h, linux/bpf_common.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU64_MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JMP_JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// `BPF_DEVCG_DEV_BLOCK` / `BPF_DEVCG_DEV_CHAR`.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

// Registers: R1 is the context; the prologue leaves type in R2, access in R3, major in R4,
// minor in R5; R6 is scratch; R0 is the verdict.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;

const LICENSE: &CStr = c"Apache-2.0";

/// Compiles `rules` to the filter program.
pub(super) fn program(rules: &[Rule]) -> Vec<Insn> {
    let (default_allow, live) = match rules.iter().rposition(Rule::is_catch_all) {
        Some(i) => (rules[i].allow, &rules[i + 1..]),
        None => (true, rules),
    };
    let mut prog = vec![
        Insn::new(LDX_MEM_W, R2, R1, 0, 0),
        Insn::new(ALU32_AND_K, R2, 0, 0, 0xffff),
        Insn::new(LDX_MEM_W, R3, R1, 0, 0),
        Insn::new(ALU32_RSH_K, R3, 0, 0, 16),
        Insn::new(LDX_MEM_W, R4, R1, 4, 0),
        Insn::new(LDX_MEM_W, R5, R1, 8, 0),
    ];
    for rule in live.iter().rev() {
        prog.extend(block(rule));
    }
    prog.push(Insn::new(ALU64_MOV_K, R0, 0, 0, i32::from(default_allow)));
    prog.push(Insn::new(JMP_EXIT, 0, 0, 0, 0));
    prog
}

/// One rule: every mismatch jumps past the block; falling through returns the rule's verdict.
fn block(rule: &Rule) -> Vec<Insn> {
    // Conditional jumps whose offset is patched once the block length is known.
    let mut insns: Vec<(Insn, bool)> = Vec::new();
    match rule.kind {
        Kind::All => {}
        Kind::Char => insns.push((Insn::new(JMP_JNE_K, R2, 0, 0, DEV_CHAR), true)),
        Kind::Block => insns.push((Insn::new(JMP_JNE_K, R2, 0, 0, DEV_BLOCK), true)),
    }
    if rule.access != ACC_ALL {
        insns.push((Insn::new(ALU64_MOV_X, R6, R3, 0, 0), false));
        // Bits are < 8, so the casts cannot truncate.
        if rule.allow {
            // An allow rule must grant every requested bit: skip if any bit is outside it.
            insns.push((
                Insn::new(ALU32_AND_K, R6, 0, 0, (!rule.access & ACC_ALL) as i32),
                false,
            ));
            insns.push((Insn::new(JMP_JNE_K, R6, 0, 0, 0), true));
        } else {
            // A deny rule forbids the request if it asks for any of the denied bits.
            insns.push((Insn::new(ALU32_AND_K, R6, 0, 0, rule.access as i32), false));
            insns.push((Insn::new(JMP_JEQ_K, R6, 0, 0, 0), true));
        }
    }
    // from_spec keeps numbers within i32.
    if let Some(major) = rule.major {
        insns.push((Insn::new(JMP_JNE_K, R4, 0, 0, major as i32), true));
    }
    if let Some(minor) = rule.minor {
        insns.push((Insn::new(JMP_JNE_K, R5, 0, 0, minor as i32), true));
    }
    insns.push((
        Insn::new(ALU64_MOV_K, R0, 0, 0, i32::from(rule.allow)),
        false,
    ));
    insns.push((Insn::new(JMP_EXIT, 0, 0, 0, 0), false));
    let len = insns.len();
    insns
        .into_iter()
        .enumerate()
        .map(|(i, (mut insn, jumps_out))| {
            if jumps_out {
                // A block is a few instructions, far below i16::MAX.
                insn.off = (len - i - 1) as i16;
            }
            insn
        })
        .collect()
}

/// Loads the filter for `rules` and attaches it to the cgroup directory `dir`, then detaches the
/// filters that were attached there before, so an update replaces rather than stacks (with
/// `BPF_F_ALLOW_MULTI` every attached program must allow).
pub(super) fn apply(dir: &Path, rules: &[Rule]) -> Result<(), CgroupError> {
    let err = |op, source| CgroupError::DeviceFilter {
        op,
        path: dir.to_path_buf(),
        source,
    };
    let insns = program(rules);
    let cgroup = std::fs::File::open(dir).map_err(|e| err("open", e))?;
    let old = bpf::prog_query(cgroup.as_fd(), bpf::ATTACH_TYPE_CGROUP_DEVICE)
        .map_err(|e| err("query", e))?;
    let prog = bpf::prog_load(bpf::PROG_TYPE_CGROUP_DEVICE, &insns, LICENSE)
        .map_err(|e| err("load", e))?;
    bpf::prog_attach(
        prog.as_fd(),
        cgroup.as_fd(),
        bpf::ATTACH_TYPE_CGROUP_DEVICE,
        bpf::F_ALLOW_MULTI,
    )
    .map_err(|e| err("attach", e))?;
    tracing::debug!(path = %dir.display(), insns = insns.len(), replaced = old.len(), "attached device filter");
    for id in old {
        let old_prog = match bpf::prog_get_fd_by_id(id) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(err("open old", e)),
        };
        match bpf::prog_detach(
            old_prog.as_fd(),
            cgroup.as_fd(),
            bpf::ATTACH_TYPE_CGROUP_DEVICE,
        ) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(err("detach", e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::devices::{evaluate, ACC_MKNOD, ACC_READ, ACC_WRITE};
    use super::*;

    /// Runs the subset of eBPF that [`program`] emits on one device context.
    fn run(prog: &[Insn], ctx: [u32; 3]) -> u64 {
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        for _ in 0..10_000 {
            let insn = prog[pc];
            let (dst, src) = (usize::from(insn.dst()), usize::from(insn.src()));
            let imm = i64::from(insn.imm) as u64;
            pc += 1;
            match insn.code {
                LDX_MEM_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = u64::from(ctx[usize::try_from(insn.off).unwrap() / 4]);
                }
                ALU32_AND_K => r[dst] = (r[dst] & imm) & 0xffff_ffff,
                ALU32_RSH_K => r[dst] = (r[dst] & 0xffff_ffff) >> imm,
                ALU64_MOV_X => r[dst] = r[src],
                ALU64_MOV_K => r[dst] = imm,
                JMP_JEQ_K | JMP_JNE_K => {
                    if (r[dst] == imm) == (insn.code == JMP_JEQ_K) {
                        pc = pc.checked_add_signed(isize::from(insn.off)).unwrap();
                    }
                }
                JMP_EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
        panic!("program did not exit");
    }

    fn ctx(kind: Kind, major: u32, minor: u32, access: u32) -> [u32; 3] {
        let t = match kind {
            Kind::Block => 1,
            Kind::Char => 2,
            Kind::All => unreachable!("requests name a device kind"),
        };
        [(access << 16) | t, major, minor]
    }

    fn rule(allow: bool, kind: Kind, major: Option<u32>, minor: Option<u32>, access: u32) -> Rule {
        Rule {
            allow,
            kind,
            major,
            minor,
            access,
        }
    }

    fn deny_all() -> Rule {
        rule(false, Kind::All, None, None, ACC_ALL)
    }

    #[test]
    fn structure_prologue_blocks_and_default() {
        let rules = [
            deny_all(),
            rule(true, Kind::Char, Some(1), Some(3), ACC_ALL),
        ];
        let prog = program(&rules);
        assert_eq!(prog[0], Insn::new(LDX_MEM_W, R2, R1, 0, 0));
        assert_eq!(prog[3], Insn::new(ALU32_RSH_K, R3, 0, 0, 16));
        // One block: type, major, minor checks, verdict, exit.
        assert_eq!(prog.len(), 6 + 5 + 2);
        assert_eq!(prog[6], Insn::new(JMP_JNE_K, R2, 0, 4, DEV_CHAR));
        assert_eq!(prog[7], Insn::new(JMP_JNE_K, R4, 0, 3, 1));
        assert_eq!(prog[8], Insn::new(JMP_JNE_K, R5, 0, 2, 3));
        assert_eq!(prog[9], Insn::new(ALU64_MOV_K, R0, 0, 0, 1));
        assert_eq!(prog[10].code, JMP_EXIT);
        // The leading deny-all is not a block but the fall-through verdict.
        assert_eq!(prog[11], Insn::new(ALU64_MOV_K, R0, 0, 0, 0));
        assert_eq!(prog[12].code, JMP_EXIT);
    }

    #[test]
    fn every_jump_lands_on_a_block_start_inside_the_program() {
        let rules = [
            deny_all(),
            rule(true, Kind::Char, None, None, ACC_MKNOD),
            rule(false, Kind::Block, Some(8), None, ACC_WRITE),
            rule(true, Kind::Char, Some(1), Some(3), ACC_READ | ACC_WRITE),
        ];
        let prog = program(&rules);
        let exits: Vec<usize> = (0..prog.len())
            .filter(|&i| prog[i].code == JMP_EXIT)
            .collect();
        assert_eq!(exits.len(), 4, "three blocks and the default");
        let starts: Vec<usize> = std::iter::once(6)
            .chain(exits.iter().map(|e| e + 1))
            .collect();
        for (i, insn) in prog.iter().enumerate() {
            if matches!(insn.code, JMP_JEQ_K | JMP_JNE_K) {
                let target = i + 1 + usize::try_from(insn.off).unwrap();
                assert!(starts.contains(&target), "jump at {i} lands on {target}");
                assert!(target < prog.len());
            }
        }
    }

    #[test]
    fn denies_null_write_but_allows_null_read_and_zero() {
        let rules = [
            rule(true, Kind::All, None, None, ACC_ALL),
            rule(false, Kind::Char, Some(1), Some(3), ACC_WRITE),
        ];
        let prog = program(&rules);
        assert_eq!(run(&prog, ctx(Kind::Char, 1, 3, ACC_WRITE)), 0);
        assert_eq!(run(&prog, ctx(Kind::Char, 1, 3, ACC_READ | ACC_WRITE)), 0);
        assert_eq!(run(&prog, ctx(Kind::Char, 1, 3, ACC_READ)), 1);
        assert_eq!(run(&prog, ctx(Kind::Char, 1, 5, ACC_WRITE)), 1);
    }

    fn arb_rule() -> impl Strategy<Value = Rule> {
        let kind = prop_oneof![Just(Kind::All), Just(Kind::Char), Just(Kind::Block)];
        let num = prop::option::of(0u32..4);
        (any::<bool>(), kind, num.clone(), num, 1u32..8).prop_map(
            |(allow, kind, major, minor, access)| {
                if kind == Kind::All {
                    rule(allow, kind, None, None, ACC_ALL)
                } else {
                    rule(allow, kind, major, minor, access)
                }
            },
        )
    }

    proptest! {
        #[test]
        fn program_agrees_with_last_match_wins(
            rules in prop::collection::vec(arb_rule(), 0..8),
            block in any::<bool>(),
            major in 0u32..4,
            minor in 0u32..4,
            access in 1u32..8,
        ) {
            let kind = if block { Kind::Block } else { Kind::Char };
            let prog = program(&rules);
            let want = evaluate(&rules, kind, major, minor, access);
            prop_assert_eq!(run(&prog, ctx(kind, major, minor, access)) == 1, want);
        }
    }
}
