//! A tiny KVM probe: create a VM whose vCPU starts in 64-bit long mode (as
//! a Linux kernel runs), with identity-mapped page tables, and run
//! `mov rax, cr3; mov cr3, rax; mov al, 0x42; out 0x10, al; hlt`. A working
//! KVM exits once for the port write and once for `hlt`; a broken one (such
//! as a nested PVM hypervisor that cannot run ordinary guest kernels) fails
//! or exits otherwise.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

const KVMIO: u64 = 0xAE;
const fn io(nr: u64) -> u64 {
    (KVMIO << 8) | nr
}
const fn iow(nr: u64, size: u64) -> u64 {
    (1 << 30) | (size << 16) | (KVMIO << 8) | nr
}
const fn ior(nr: u64, size: u64) -> u64 {
    (2 << 30) | (size << 16) | (KVMIO << 8) | nr
}

const KVM_GET_API_VERSION: u64 = io(0x00);
const KVM_CREATE_VM: u64 = io(0x01);
const KVM_GET_VCPU_MMAP_SIZE: u64 = io(0x04);
const KVM_CREATE_VCPU: u64 = io(0x41);
const KVM_SET_USER_MEMORY_REGION: u64 = iow(0x46, 32);
const KVM_RUN: u64 = io(0x80);
const KVM_GET_REGS: u64 = ior(0x81, 144);
const KVM_SET_REGS: u64 = iow(0x82, 144);
const KVM_GET_SREGS: u64 = ior(0x83, 312);
const KVM_SET_SREGS: u64 = iow(0x84, 312);
const KVM_EXIT_IO: u32 = 2;
const KVM_EXIT_HLT: u32 = 5;
const MEMORY: usize = 0x10000;
const PML4: usize = 0x1000;
const PDPT: usize = 0x2000;
const PD: usize = 0x3000;
const CODE: usize = 0x4000;

#[repr(C)]
struct UserspaceMemoryRegion {
    slot: u32,
    flags: u32,
    guest_phys_addr: u64,
    memory_size: u64,
    userspace_addr: u64,
}

/// An anonymous shared mapping, unmapped on drop.
struct Mapping {
    addr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    fn new(len: usize, fd: Option<&OwnedFd>) -> io::Result<Mapping> {
        let (flags, raw) = match fd {
            Some(fd) => (libc::MAP_SHARED, fd.as_raw_fd()),
            None => (libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: a fresh mapping at a kernel-chosen address; nothing aliases it.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                raw,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { addr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: addr/len came from a successful mmap owned by self.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

fn ioctl(fd: &OwnedFd, request: u64, arg: u64) -> io::Result<i32> {
    // SAFETY: callers pass either an integer argument or a pointer to a
    // live buffer of the size encoded in `request`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// A flat 64-bit kvm_segment: code (selector 8) or data (selector 0x10).
fn flat_segment(code: bool) -> [u8; 24] {
    let mut seg = [0u8; 24];
    seg[8..12].copy_from_slice(&0xffff_ffffu32.to_ne_bytes()); // limit
    let selector: u16 = if code { 0x8 } else { 0x10 };
    seg[12..14].copy_from_slice(&selector.to_ne_bytes());
    seg[14] = if code { 0xb } else { 0x3 }; // type: exec/read or read/write, accessed
    seg[15] = 1; // present
    seg[17] = u8::from(!code); // db
    seg[18] = 1; // s
    seg[19] = u8::from(code); // l
    seg[20] = 1; // g
    seg
}

fn owned(fd: i32) -> OwnedFd {
    // SAFETY: `fd` was just returned by a KVM ioctl and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Runs the probe guest; `Ok(())` only if it exited through the expected
/// port write and `hlt`. The error says what went wrong.
pub fn probe_kvm_runs_guest() -> io::Result<()> {
    let kvm: OwnedFd = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/kvm")?
        .into();
    let version = ioctl(&kvm, KVM_GET_API_VERSION, 0)?;
    if version != 12 {
        return Err(io::Error::other(format!("kvm api version {version}")));
    }
    let vm = owned(ioctl(&kvm, KVM_CREATE_VM, 0)?);
    let memory = Mapping::new(MEMORY, None)?;
    let code: [u8; 11] = [
        0x0f, 0x20, 0xd8, // mov rax, cr3
        0x0f, 0x22, 0xd8, // mov cr3, rax
        0xb0, 0x42, // mov al, 0x42
        0xe6, 0x10, // out 0x10, al
        0xf4, // hlt
    ];
    let put = |offset: usize, bytes: &[u8]| {
        assert!(offset + bytes.len() <= MEMORY);
        // SAFETY: the range lies inside the writable MEMORY-byte mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                memory.addr.cast::<u8>().add(offset),
                bytes.len(),
            )
        };
    };
    // Identity map the first 2 MiB with one large page.
    put(PML4, &(PDPT as u64 | 0x3).to_le_bytes());
    put(PDPT, &(PD as u64 | 0x3).to_le_bytes());
    put(PD, &0x83u64.to_le_bytes());
    put(CODE, &code);
    let region = UserspaceMemoryRegion {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: MEMORY as u64,
        userspace_addr: memory.addr as u64,
    };
    ioctl(&vm, KVM_SET_USER_MEMORY_REGION, &region as *const _ as u64)?;
    let vcpu = owned(ioctl(&vm, KVM_CREATE_VCPU, 0)?);
    let run_size = usize::try_from(ioctl(&kvm, KVM_GET_VCPU_MMAP_SIZE, 0)?)
        .map_err(|_| io::Error::other("bad kvm_run size"))?;
    let run = Mapping::new(run_size, Some(&vcpu))?;

    let mut sregs = [0u8; 312];
    ioctl(&vcpu, KVM_GET_SREGS, sregs.as_mut_ptr() as u64)?;
    // kvm_sregs: cs, ds, es, fs, gs, ss, tr, ldt (24 bytes each), gdt, idt
    // (16 each), then cr0 at 224, cr3 at 240, cr4 at 248, efer at 264.
    for (index, code_segment) in [
        (0, true),
        (1, false),
        (2, false),
        (3, false),
        (4, false),
        (5, false),
    ] {
        sregs[index * 24..index * 24 + 24].copy_from_slice(&flat_segment(code_segment));
    }
    let set = |sregs: &mut [u8; 312], offset: usize, value: u64| {
        sregs[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
    };
    set(&mut sregs, 224, 0x8000_0033); // PG | NE | ET | MP | PE
    set(&mut sregs, 240, PML4 as u64);
    set(&mut sregs, 248, 0x20); // PAE
    set(&mut sregs, 264, 0x500); // LMA | LME
    ioctl(&vcpu, KVM_SET_SREGS, sregs.as_ptr() as u64)?;
    let mut regs = [0u64; 18];
    ioctl(&vcpu, KVM_GET_REGS, regs.as_mut_ptr() as u64)?;
    regs[6] = 0x8000; // rsp
    regs[16] = CODE as u64; // rip
    regs[17] = 0x2; // rflags
    ioctl(&vcpu, KVM_SET_REGS, regs.as_ptr() as u64)?;

    let read_u32 = |offset: usize| -> u32 {
        // SAFETY: offset + 4 lies inside the kvm_run mapping (run_size >= 4096).
        unsafe { std::ptr::read_volatile(run.addr.cast::<u8>().add(offset).cast::<u32>()) }
    };
    let mut saw_port_write = false;
    for _ in 0..4 {
        ioctl(&vcpu, KVM_RUN, 0)?;
        match read_u32(8) {
            KVM_EXIT_IO => {
                // kvm_run.io: direction u8, size u8, port u16, count u32, data_offset u64 at 32.
                let port = (read_u32(32) >> 16) as u16;
                // SAFETY: data_offset is within the mapping per the KVM ABI.
                let data = unsafe {
                    let offset =
                        std::ptr::read_volatile(run.addr.cast::<u8>().add(40).cast::<u64>());
                    std::ptr::read_volatile(run.addr.cast::<u8>().add(offset as usize))
                };
                if port != 0x10 || data != 0x42 {
                    return Err(io::Error::other(format!(
                        "unexpected port write {data:#x} to {port:#x}"
                    )));
                }
                saw_port_write = true;
            }
            KVM_EXIT_HLT if saw_port_write => return Ok(()),
            reason => {
                return Err(io::Error::other(format!(
                    "unexpected kvm exit reason {reason}"
                )))
            }
        }
    }
    Err(io::Error::other("probe guest never halted"))
}
