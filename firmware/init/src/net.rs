//! IPv4 interface configuration through the classic socket ioctls (one address per
//! interface, which is all the appliance's `ipv4` command manages).

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::dhcp::{mask_to_prefix, prefix_to_mask};

#[repr(C)]
#[derive(Clone, Copy)]
struct SockaddrIn {
    family: u16,
    port: u16,
    addr: [u8; 4],
    zero: [u8; 8],
}

impl SockaddrIn {
    fn new(addr: Ipv4Addr) -> Self {
        SockaddrIn {
            family: libc::AF_INET as u16,
            port: 0,
            addr: addr.octets(),
            zero: [0; 8],
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
union IfrData {
    addr: SockaddrIn,
    hwaddr: [u8; 16],
    flags: libc::c_short,
    pad: [u8; 24],
}

#[repr(C)]
struct Ifreq {
    name: [u8; libc::IFNAMSIZ],
    data: IfrData,
}

#[repr(C)]
struct Rtentry {
    pad1: libc::c_ulong,
    dst: SockaddrIn,
    gateway: SockaddrIn,
    genmask: SockaddrIn,
    flags: libc::c_ushort,
    pad2: libc::c_short,
    pad3: libc::c_ulong,
    pad4: *mut libc::c_void,
    metric: libc::c_short,
    dev: *mut libc::c_char,
    mtu: libc::c_ulong,
    window: libc::c_ulong,
    irtt: libc::c_ushort,
}

fn socket() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq(name: &str) -> std::io::Result<Ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    let mut req = Ifreq {
        name: [0; libc::IFNAMSIZ],
        data: IfrData { pad: [0; 24] },
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    Ok(req)
}

fn ioctl(request: libc::c_ulong, req: &mut Ifreq) -> std::io::Result<()> {
    let sock = socket()?;
    // SAFETY: req is a properly laid out struct ifreq that outlives the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request as _, req as *mut Ifreq) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub fn flags(name: &str) -> std::io::Result<i32> {
    let mut req = ifreq(name)?;
    ioctl(libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    Ok(unsafe { req.data.flags } as i32 & 0xffff)
}

pub fn link_up(name: &str) -> std::io::Result<()> {
    let current = flags(name)?;
    let mut req = ifreq(name)?;
    req.data.flags = (current | libc::IFF_UP) as libc::c_short;
    ioctl(libc::SIOCSIFFLAGS, &mut req)
}

pub fn mac(name: &str) -> std::io::Result<[u8; 6]> {
    let mut req = ifreq(name)?;
    ioctl(libc::SIOCGIFHWADDR, &mut req)?;
    // SAFETY: SIOCGIFHWADDR fills a sockaddr: family (2 bytes) then the address.
    let raw = unsafe { req.data.hwaddr };
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&raw[2..8]);
    Ok(mac)
}

/// (address, prefix) of the interface's primary IPv4 address.
pub fn ipv4(name: &str) -> Option<(Ipv4Addr, u8)> {
    let mut req = ifreq(name).ok()?;
    ioctl(libc::SIOCGIFADDR, &mut req).ok()?;
    // SAFETY: filled with a sockaddr_in by the kernel.
    let addr = Ipv4Addr::from(unsafe { req.data.addr }.addr);
    let mut req = ifreq(name).ok()?;
    ioctl(libc::SIOCGIFNETMASK, &mut req).ok()?;
    // SAFETY: as above.
    let mask = Ipv4Addr::from(unsafe { req.data.addr }.addr);
    Some((addr, mask_to_prefix(mask).unwrap_or(32)))
}

pub fn set_ipv4(name: &str, addr: Ipv4Addr, prefix: u8) -> std::io::Result<()> {
    let mut req = ifreq(name)?;
    req.data.addr = SockaddrIn::new(addr);
    ioctl(libc::SIOCSIFADDR, &mut req)?;
    let mut req = ifreq(name)?;
    req.data.addr = SockaddrIn::new(prefix_to_mask(prefix));
    ioctl(libc::SIOCSIFNETMASK, &mut req)
}

/// Removes the primary address (and with it the routes through this interface).
pub fn clear_ipv4(name: &str) -> std::io::Result<()> {
    let mut req = ifreq(name)?;
    req.data.addr = SockaddrIn::new(Ipv4Addr::UNSPECIFIED);
    ioctl(libc::SIOCSIFADDR, &mut req)
}

fn route(request: libc::c_ulong, name: &str, gateway: Ipv4Addr) -> std::io::Result<()> {
    let mut dev = [0 as libc::c_char; libc::IFNAMSIZ];
    for (d, b) in dev.iter_mut().zip(name.bytes().take(libc::IFNAMSIZ - 1)) {
        *d = b as libc::c_char;
    }
    let mut rt = Rtentry {
        pad1: 0,
        dst: SockaddrIn::new(Ipv4Addr::UNSPECIFIED),
        gateway: SockaddrIn::new(gateway),
        genmask: SockaddrIn::new(Ipv4Addr::UNSPECIFIED),
        flags: (libc::RTF_UP | libc::RTF_GATEWAY) as libc::c_ushort,
        pad2: 0,
        pad3: 0,
        pad4: std::ptr::null_mut(),
        metric: 0,
        dev: dev.as_mut_ptr(),
        mtu: 0,
        window: 0,
        irtt: 0,
    };
    let sock = socket()?;
    // SAFETY: rt is a struct rtentry whose dev pointer points at a live NUL-terminated name.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request as _, &mut rt as *mut Rtentry) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub fn add_default_route(name: &str, gateway: Ipv4Addr) -> std::io::Result<()> {
    match route(libc::SIOCADDRT, name, gateway) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

pub fn write_resolv_conf(servers: &[Ipv4Addr]) -> std::io::Result<()> {
    let mut text = String::from("# written by Switchboard init\n");
    for server in servers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    std::fs::write("/etc/resolv.conf.tmp", text)?;
    std::fs::rename("/etc/resolv.conf.tmp", "/etc/resolv.conf")
}
