//! IPv4 interface configuration through the classic socket ioctls (one address per
//! interface, which is all the appliance's `ipv4` command manages).

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{AddressFamily, SockFlag, SockType};

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

// The classic interface and routing ioctls (linux/sockios.h), each typed by nix.
nix::ioctl_readwrite_bad!(siocgifflags, libc::SIOCGIFFLAGS, Ifreq);
nix::ioctl_readwrite_bad!(siocsifflags, libc::SIOCSIFFLAGS, Ifreq);
nix::ioctl_readwrite_bad!(siocgifhwaddr, libc::SIOCGIFHWADDR, Ifreq);
nix::ioctl_readwrite_bad!(siocgifaddr, libc::SIOCGIFADDR, Ifreq);
nix::ioctl_readwrite_bad!(siocsifaddr, libc::SIOCSIFADDR, Ifreq);
nix::ioctl_readwrite_bad!(siocgifnetmask, libc::SIOCGIFNETMASK, Ifreq);
nix::ioctl_readwrite_bad!(siocsifnetmask, libc::SIOCSIFNETMASK, Ifreq);
nix::ioctl_write_ptr_bad!(siocaddrt, libc::SIOCADDRT, Rtentry);

/// The kind of ioctl [`ioctl`] runs: one of the interface ioctls above.
type IfreqIoctl = unsafe fn(libc::c_int, *mut Ifreq) -> nix::Result<libc::c_int>;

fn socket() -> std::io::Result<OwnedFd> {
    nix::sys::socket::socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .map_err(std::io::Error::from)
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

fn ioctl(request: IfreqIoctl, req: &mut Ifreq) -> std::io::Result<()> {
    let sock = socket()?;
    // SAFETY: req is a properly laid out struct ifreq that outlives the call, and every
    // IfreqIoctl takes exactly that.
    unsafe { request(sock.as_raw_fd(), req) }
        .map(|_| ())
        .map_err(std::io::Error::from)
}

pub fn flags(name: &str) -> std::io::Result<i32> {
    let mut req = ifreq(name)?;
    ioctl(siocgifflags, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    Ok(unsafe { req.data.flags } as i32 & 0xffff)
}

pub fn link_up(name: &str) -> std::io::Result<()> {
    let current = flags(name)?;
    let mut req = ifreq(name)?;
    req.data.flags = (current | libc::IFF_UP) as libc::c_short;
    ioctl(siocsifflags, &mut req)
}

pub fn mac(name: &str) -> std::io::Result<[u8; 6]> {
    let mut req = ifreq(name)?;
    ioctl(siocgifhwaddr, &mut req)?;
    // SAFETY: SIOCGIFHWADDR fills a sockaddr: family (2 bytes) then the address.
    let raw = unsafe { req.data.hwaddr };
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&raw[2..8]);
    Ok(mac)
}

/// (address, prefix) of the interface's primary IPv4 address.
pub fn ipv4(name: &str) -> Option<(Ipv4Addr, u8)> {
    let mut req = ifreq(name).ok()?;
    ioctl(siocgifaddr, &mut req).ok()?;
    // SAFETY: filled with a sockaddr_in by the kernel.
    let addr = Ipv4Addr::from(unsafe { req.data.addr }.addr);
    let mut req = ifreq(name).ok()?;
    ioctl(siocgifnetmask, &mut req).ok()?;
    // SAFETY: as above.
    let mask = Ipv4Addr::from(unsafe { req.data.addr }.addr);
    Some((addr, mask_to_prefix(mask).unwrap_or(32)))
}

pub fn set_ipv4(name: &str, addr: Ipv4Addr, prefix: u8) -> std::io::Result<()> {
    let mut req = ifreq(name)?;
    req.data.addr = SockaddrIn::new(addr);
    ioctl(siocsifaddr, &mut req)?;
    let mut req = ifreq(name)?;
    req.data.addr = SockaddrIn::new(prefix_to_mask(prefix));
    ioctl(siocsifnetmask, &mut req)
}

/// Removes the primary address (and with it the routes through this interface).
pub fn clear_ipv4(name: &str) -> std::io::Result<()> {
    let mut req = ifreq(name)?;
    req.data.addr = SockaddrIn::new(Ipv4Addr::UNSPECIFIED);
    ioctl(siocsifaddr, &mut req)
}

fn add_route(name: &str, gateway: Ipv4Addr) -> std::io::Result<()> {
    let mut dev = [0 as libc::c_char; libc::IFNAMSIZ];
    for (d, b) in dev.iter_mut().zip(name.bytes().take(libc::IFNAMSIZ - 1)) {
        *d = b as libc::c_char;
    }
    let rt = Rtentry {
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
    unsafe { siocaddrt(sock.as_raw_fd(), &rt) }
        .map(|_| ())
        .map_err(std::io::Error::from)
}

pub fn add_default_route(name: &str, gateway: Ipv4Addr) -> std::io::Result<()> {
    match add_route(name, gateway) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed ioctls against the loopback interface every host has.
    #[test]
    fn loopback_reads_back_through_the_interface_ioctls() {
        assert_ne!(flags("lo").unwrap() & libc::IFF_UP, 0, "lo is up");
        assert_eq!(ipv4("lo"), Some((Ipv4Addr::LOCALHOST, 8)));
        assert_eq!(mac("lo").unwrap(), [0; 6]);
        assert!(flags("nosuch0").is_err());
        assert!(ifreq("a-name-longer-than-ifnamsiz").is_err());
    }
}
